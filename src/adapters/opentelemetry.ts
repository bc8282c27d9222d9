/**
 * OpenTelemetry metrics for a LeaderElector through a `Meter` of `@opentelemetry/api`: `import {
 * instrument } from "etcd-election/opentelemetry"`. Only the API's types are used: the meter you pass
 * (from your SDK's MeterProvider) does the work, so nothing of OpenTelemetry is loaded by this package.
 *
 * @module etcd-election/opentelemetry
 */
import type { Attributes, BatchObservableCallback, Meter } from "@opentelemetry/api";
import { InvalidArgumentError } from "../errors.js";
import type { ElectorEvents } from "../leader-elector.js";
import {
  CAMPAIGN_WAIT_BUCKETS,
  ELECTOR_STATES,
  ROUND_TRIP_BUCKETS,
  SESSION_STATES,
  isWorkFailure,
  type ObservedElector,
} from "./observed.js";

export type { ObservedElector } from "./observed.js";

/** The meter {@link instrument} makes an elector's instruments on, and the attributes it adds. */
export interface OpenTelemetryOptions {
  /** From your MeterProvider: `metrics.getMeter("my-service")` or `provider.getMeter(...)`. */
  meter: Meter;
  /** Added to every data point of this elector (`etcd_election.name`, the election name, is always there). */
  attributes?: Attributes;
}

/**
 * Records the elector's metrics through `meter` (every data point carries `etcd_election.name`):
 *
 * - `etcd_election.leader.status` observable gauge: 1 while this process leads, else 0;
 * - `etcd_election.state` and `etcd_election.session.state` observable gauges: 1 for the current state
 *   (attributes `etcd_election.state`, `etcd_election.session.state`), 0 for the others;
 * - `etcd_election.last_failover` observable gauge (s): from the previous leader's key gone to leading;
 * - `etcd_election.terms`, `etcd_election.failures` (attribute `error.type`: the error code) and
 *   `etcd_election.work_failures` counters;
 * - `etcd_election.campaign.wait` and `etcd_election.keepalive.round_trip` histograms (s).
 *
 * Returns a function that removes the elector's listeners and observable callbacks (instruments cannot
 * be removed from a meter; they stop receiving data from this elector).
 */
export function instrument(elector: ObservedElector, options: OpenTelemetryOptions): () => void {
  const { meter, attributes = {} } = options ?? ({} as Partial<OpenTelemetryOptions>);
  if (!meter || typeof meter.createCounter !== "function")
    throw new InvalidArgumentError("instrument needs { meter }: an OpenTelemetry Meter");
  const attrs: Attributes = { ...attributes, "etcd_election.name": elector.name };

  const leader = meter.createObservableGauge("etcd_election.leader.status", {
    description: "1 while this process leads the election, 0 otherwise",
  });
  const state = meter.createObservableGauge("etcd_election.state", {
    description: "1 for the elector's current state (idle, campaigning, leading, stopping, stopped), 0 for the others",
  });
  const sessionState = meter.createObservableGauge("etcd_election.session.state", {
    description:
      "1 for the state of the elector's session (connected, suspended, lost, closed); all 0 between sessions",
  });
  const lastFailover = meter.createObservableGauge("etcd_election.last_failover", {
    description:
      "From the previous leader's key gone to this process leading, for the last term won after another leader",
    unit: "s",
  });
  const terms = meter.createCounter("etcd_election.terms", {
    description: "Terms this process has led",
    unit: "{term}",
  });
  const failures = meter.createCounter("etcd_election.failures", {
    description: "Failures to reach etcd the elector handled (it retries), by error code",
    unit: "{failure}",
  });
  const workFailures = meter.createCounter("etcd_election.work_failures", {
    description: "Times the elector's callbacks threw (the leader resigns and campaigns again)",
    unit: "{failure}",
  });
  const campaignWait = meter.createHistogram("etcd_election.campaign.wait", {
    description: "From the start of a campaign to leading, for each term won",
    unit: "s",
    advice: { explicitBucketBoundaries: CAMPAIGN_WAIT_BUCKETS },
  });
  const roundTrip = meter.createHistogram("etcd_election.keepalive.round_trip", {
    description: "Round trip of each acknowledged keepalive of the elector's session",
    unit: "s",
    advice: { explicitBucketBoundaries: ROUND_TRIP_BUCKETS },
  });

  // One callback reads metrics() once per collection for all the gauges.
  const observables = [leader, state, sessionState, lastFailover];
  const observe: BatchObservableCallback = (result) => {
    const m = elector.metrics();
    result.observe(leader, elector.isLeader() ? 1 : 0, attrs);
    for (const s of ELECTOR_STATES)
      result.observe(state, s === m.state ? 1 : 0, { ...attrs, "etcd_election.state": s });
    for (const s of SESSION_STATES)
      result.observe(sessionState, s === m.sessionState ? 1 : 0, { ...attrs, "etcd_election.session.state": s });
    if (m.lastFailoverMs !== undefined) result.observe(lastFailover, m.lastFailoverMs / 1000, attrs);
  };
  meter.addBatchObservableCallback(observe, observables);

  const elected: ElectorEvents["elected"] = (_term, waitMs) => {
    terms.add(1, attrs);
    campaignWait.record(waitMs / 1000, attrs);
  };
  const failure: ElectorEvents["failure"] = (error) => {
    if (isWorkFailure(error)) workFailures.add(1, attrs);
    else failures.add(1, { ...attrs, "error.type": error.code });
  };
  const renewed: ElectorEvents["renewed"] = (roundTripMs) => roundTrip.record(roundTripMs / 1000, attrs);
  elector.on("elected", elected);
  elector.on("failure", failure);
  elector.on("renewed", renewed);
  // The counters' series exist from the start, so rates begin at zero rather than at the first event.
  terms.add(0, attrs);
  workFailures.add(0, attrs);

  let disposed = false;
  return () => {
    if (disposed) return;
    disposed = true;
    meter.removeBatchObservableCallback(observe, observables);
    elector.off("elected", elected);
    elector.off("failure", failure);
    elector.off("renewed", renewed);
  };
}
