/**
 * Prometheus metrics for a LeaderElector through prom-client: `import { registerMetrics } from
 * "etcd-election/prometheus"`. prom-client is an optional peer dependency; only this entry point loads it.
 *
 * @module etcd-election/prometheus
 */
import { Counter, Gauge, Histogram, type Registry, type RegistryContentType } from "prom-client";
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

/** Where {@link registerMetrics} registers an elector's metrics, and how it names and labels them. */
export interface PrometheusOptions {
  /** The prom-client registry to register with (`new Registry()`, or prom-client's `register`). */
  registry: Registry<RegistryContentType>;
  /** Prepended to every metric name (default `etcd_election_`). */
  prefix?: string;
  /**
   * Constant labels added to every series of this elector (`name`, the election name, is always there).
   * Electors sharing a registry and prefix must use the same label names.
   */
  labels?: Record<string, string>;
}

type Labels = Record<string, string>;

/** One set of metrics per registry and prefix, shared by every elector registered there. */
interface Family {
  labelNames: string[];
  members: Map<ObservedElector, Labels>;
  leader: Gauge;
  state: Gauge;
  sessionState: Gauge;
  lastFailover: Gauge;
  terms: Counter;
  failures: Counter;
  workFailures: Counter;
  campaignWait: Histogram;
  roundTrip: Histogram;
}

const families = new WeakMap<Registry<RegistryContentType>, Map<string, Family>>();

/** Metric names, after the prefix. */
const NAMES = {
  leader: "leader_status",
  state: "state",
  sessionState: "session_state",
  lastFailover: "last_failover_seconds",
  terms: "terms_total",
  failures: "failures_total",
  workFailures: "work_failures_total",
  campaignWait: "campaign_wait_seconds",
  roundTrip: "keepalive_round_trip_seconds",
} as const;

const LABEL_NAME = /^[a-zA-Z_][a-zA-Z0-9_]*$/;
const RESERVED = new Set(["name", "state", "code", "le", "quantile"]);

/**
 * Registers the elector's metrics (default prefix `etcd_election_`; every series labelled with `name`,
 * the election name):
 *
 * - `leader_status` gauge: 1 while this process leads, else 0 (as client-go's `leader_election_master_status`);
 * - `state{state}`, `session_state{state}` gauges: 1 for the current state, 0 for the others;
 * - `terms_total`, `failures_total{code}` (failures to reach etcd), `work_failures_total` (callbacks that threw);
 * - `campaign_wait_seconds` and `keepalive_round_trip_seconds` histograms;
 * - `last_failover_seconds` gauge: from the previous leader's key gone to this process leading.
 *
 * Several electors can share one registry (each election is its own `name`). Returns a function that
 * removes the elector's listeners and series, and the metrics themselves once no elector uses them.
 */
export function registerMetrics(elector: ObservedElector, options: PrometheusOptions): () => void {
  const { registry, prefix = "etcd_election_", labels: extra = {} } = options ?? ({} as Partial<PrometheusOptions>);
  if (!registry || typeof registry.registerMetric !== "function")
    throw new InvalidArgumentError("registerMetrics needs { registry }: a prom-client Registry");
  if (typeof prefix !== "string" || (prefix !== "" && !/^[a-zA-Z_:][a-zA-Z0-9_:]*$/.test(prefix))) {
    throw new InvalidArgumentError(
      `prefix must be a valid start of a Prometheus metric name, got ${JSON.stringify(prefix)}`,
    );
  }
  for (const [key, value] of Object.entries(extra)) {
    if (!LABEL_NAME.test(key) || key.startsWith("__") || RESERVED.has(key))
      throw new InvalidArgumentError(`label name ${JSON.stringify(key)} is not allowed`);
    if (typeof value !== "string") throw new InvalidArgumentError(`label ${key} must be a string`);
  }
  const labels: Labels = { name: elector.name, ...extra };
  const labelNames = Object.keys(labels).sort();

  const family = familyFor(registry, prefix, labelNames);
  for (const [other, theirs] of family.members) {
    if (other === elector || sameLabels(theirs, labels)) {
      throw new InvalidArgumentError(
        `metrics for election "${elector.name}" with these labels are already registered under "${prefix}"`,
      );
    }
  }
  family.members.set(elector, labels);
  // Counters and histograms start at zero, so that rate() and absent() work from the first scrape.
  family.terms.inc(labels, 0);
  family.workFailures.inc(labels, 0);
  family.campaignWait.zero(labels);
  family.roundTrip.zero(labels);

  const failureCodes = new Set<string>();
  const elected: ElectorEvents["elected"] = (_term, waitMs) => {
    family.terms.inc(labels);
    family.campaignWait.observe(labels, waitMs / 1000);
  };
  const failure: ElectorEvents["failure"] = (error) => {
    if (isWorkFailure(error)) return family.workFailures.inc(labels);
    failureCodes.add(error.code);
    family.failures.inc({ ...labels, code: error.code });
  };
  const renewed: ElectorEvents["renewed"] = (roundTripMs) => family.roundTrip.observe(labels, roundTripMs / 1000);
  elector.on("elected", elected);
  elector.on("failure", failure);
  elector.on("renewed", renewed);

  let disposed = false;
  return () => {
    if (disposed) return;
    disposed = true;
    elector.off("elected", elected);
    elector.off("failure", failure);
    elector.off("renewed", renewed);
    family.members.delete(elector);
    for (const metric of [family.terms, family.workFailures, family.campaignWait, family.roundTrip])
      metric.remove(labels);
    for (const code of failureCodes) family.failures.remove({ ...labels, code });
    if (family.members.size === 0) {
      for (const suffix of Object.values(NAMES)) registry.removeSingleMetric(prefix + suffix);
      families.get(registry)?.delete(prefix);
    }
  };
}

function familyFor(registry: Registry<RegistryContentType>, prefix: string, labelNames: string[]): Family {
  let byPrefix = families.get(registry);
  if (!byPrefix) families.set(registry, (byPrefix = new Map<string, Family>()));
  const existing = byPrefix.get(prefix);
  if (existing) {
    if (existing.labelNames.join() !== labelNames.join()) {
      throw new InvalidArgumentError(
        `electors sharing the prefix "${prefix}" need the same label names: [${existing.labelNames.join(", ")}], got [${labelNames.join(", ")}]`,
      );
    }
    return existing;
  }
  for (const suffix of Object.values(NAMES)) {
    if (registry.getSingleMetric(prefix + suffix))
      throw new InvalidArgumentError(`the registry already has a metric named ${prefix + suffix}`);
  }
  const members = new Map<ObservedElector, Labels>();
  const registers = [registry];
  const withState = [...labelNames, "state"];
  /** A gauge per state, 1 for the elector's current one and 0 for the others, read at scrape time. */
  const oneHot = (
    name: string,
    help: string,
    states: readonly string[],
    current: (elector: ObservedElector) => string | undefined,
  ): Gauge =>
    new Gauge({
      name,
      help,
      labelNames: withState,
      registers,
      collect() {
        this.reset();
        for (const [elector, labels] of members) {
          const now = current(elector);
          for (const state of states) this.set({ ...labels, state }, state === now ? 1 : 0);
        }
      },
    });
  const family: Family = {
    labelNames,
    members,
    // Gauges are read from the electors at scrape time, so they can never be stale.
    leader: new Gauge({
      name: prefix + NAMES.leader,
      help: "1 while this process leads the election, 0 otherwise",
      labelNames,
      registers,
      collect() {
        this.reset();
        for (const [elector, labels] of members) this.set(labels, elector.isLeader() ? 1 : 0);
      },
    }),
    state: oneHot(
      prefix + NAMES.state,
      "1 for the elector's current state (idle, campaigning, leading, stopping, stopped), 0 for the others",
      ELECTOR_STATES,
      (elector) => elector.metrics().state,
    ),
    sessionState: oneHot(
      prefix + NAMES.sessionState,
      "1 for the state of the elector's session (connected, suspended, lost, closed); all 0 between sessions",
      SESSION_STATES,
      (elector) => elector.metrics().sessionState,
    ),
    lastFailover: new Gauge({
      name: prefix + NAMES.lastFailover,
      help: "From the previous leader's key gone to this process leading, for the last term won after another leader",
      labelNames,
      registers,
      collect() {
        this.reset();
        for (const [elector, labels] of members) {
          const ms = elector.metrics().lastFailoverMs;
          if (ms !== undefined) this.set(labels, ms / 1000);
        }
      },
    }),
    terms: new Counter({ name: prefix + NAMES.terms, help: "Terms this process has led", labelNames, registers }),
    failures: new Counter({
      name: prefix + NAMES.failures,
      help: "Failures to reach etcd the elector handled (it retries), by error code",
      labelNames: [...labelNames, "code"],
      registers,
    }),
    workFailures: new Counter({
      name: prefix + NAMES.workFailures,
      help: "Times the elector's callbacks threw (the leader resigns and campaigns again)",
      labelNames,
      registers,
    }),
    campaignWait: new Histogram({
      name: prefix + NAMES.campaignWait,
      help: "From the start of a campaign to leading, for each term won",
      labelNames,
      buckets: CAMPAIGN_WAIT_BUCKETS,
      registers,
    }),
    roundTrip: new Histogram({
      name: prefix + NAMES.roundTrip,
      help: "Round trip of each acknowledged keepalive of the elector's session",
      labelNames,
      buckets: ROUND_TRIP_BUCKETS,
      registers,
    }),
  };
  byPrefix.set(prefix, family);
  return family;
}

function sameLabels(a: Labels, b: Labels): boolean {
  const keys = Object.keys(a);
  return keys.length === Object.keys(b).length && keys.every((k) => a[k] === b[k]);
}
