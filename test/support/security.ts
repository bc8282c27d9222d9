/**
 * A secured etcd for the tests: TLS material made with openssl (a CA, a server certificate for
 * 127.0.0.1, a client certificate, a client certificate from a CA etcd does not trust, a JWT key), and the
 * users of an etcd with authentication: root, and `app`, whose role may read and write `app/` only.
 */
import { execFileSync } from "node:child_process";
import { existsSync, mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Etcd3, IOptions } from "etcd3";
import { OWNER_PID } from "./runtime.js";

export interface Credentials {
  username: string;
  password: string;
}

export const ROOT: Credentials = { username: "root", password: "root-secret" };
/** The application's least-privilege user: read-write on APP_PREFIX, nothing else. */
export const APP: Credentials = { username: "app", password: "app-secret" };
export const APP_PREFIX = "app/";

export interface TlsMaterial {
  /** Holds the PEM files (ca.pem, server.pem/.key, client.pem/.key, stranger.pem/.key). */
  dir: string;
  ca: Buffer;
  clientCert: Buffer;
  clientKey: Buffer;
  /** A client certificate signed by a CA etcd does not trust, and that CA. */
  strangerCert: Buffer;
  strangerCa: Buffer;
  strangerKey: Buffer;
}

/** How a member is secured, as launch() was asked. */
export interface Security {
  tls?: TlsMaterial;
  auth?: boolean;
}

let material: TlsMaterial | undefined;

/** The run's TLS material, made once (every test worker shares the run's directory). */
export function tlsMaterial(): TlsMaterial {
  if (material) return material;
  const runDir = process.env.ETCD_ELECTION_RUN_DIR ?? join(tmpdir(), `etcd-election-test-${OWNER_PID}`);
  const dir = join(runDir, "tls");
  if (!existsSync(join(dir, "ca.pem"))) {
    const scratch = `${dir}.${process.pid}`;
    makeCertificates(scratch);
    try {
      renameSync(scratch, dir); // atomic: a worker that lost the race uses the winner's
    } catch {
      rmSync(scratch, { recursive: true, force: true });
    }
  }
  const read = (file: string): Buffer => readFileSync(join(dir, file));
  material = {
    dir,
    ca: read("ca.pem"),
    clientCert: read("client.pem"),
    clientKey: read("client.key"),
    strangerCert: read("stranger.pem"),
    strangerKey: read("stranger.key"),
    strangerCa: read("stranger-ca.pem"),
  };
  return material;
}

function makeCertificates(dir: string): void {
  mkdirSync(dir, { recursive: true });
  const openssl = (...args: string[]): void => void execFileSync("openssl", args, { cwd: dir, stdio: "ignore" });
  const key = (name: string): void =>
    openssl("ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", `${name}.key`);
  const ca = (name: string, cn: string): void => {
    key(name);
    openssl("req", "-x509", "-new", "-key", `${name}.key`, "-out", `${name}.pem`, "-days", "7", "-subj", `/CN=${cn}`);
  };
  const signed = (name: string, cn: string, by: string, ext: string): void => {
    key(name);
    openssl("req", "-new", "-key", `${name}.key`, "-out", `${name}.csr`, "-subj", `/CN=${cn}`);
    writeFileSync(join(dir, `${name}.ext`), ext);
    openssl(
      "x509",
      "-req",
      "-in",
      `${name}.csr`,
      "-CA",
      `${by}.pem`,
      "-CAkey",
      `${by}.key`,
      "-CAcreateserial",
      "-out",
      `${name}.pem`,
      "-days",
      "7",
      "-extfile",
      `${name}.ext`,
    );
  };
  ca("ca", "etcd-election test CA");
  signed("server", "etcd", "ca", "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth,clientAuth\n");
  signed("client", "etcd-election test client", "ca", "extendedKeyUsage=clientAuth\n");
  ca("stranger-ca", "a CA etcd does not trust");
  signed("stranger", "stranger", "stranger-ca", "extendedKeyUsage=clientAuth\n");
  key("jwt"); // etcd's --auth-token=jwt signing key (ES256)
  openssl("ec", "-in", "jwt.key", "-pubout", "-out", "jwt.pub");
}

/** etcd flags for TLS on the client port, with client certificates required; `certDir` as etcd sees it. */
export function tlsArgs(certDir: string): string[] {
  return [
    `--cert-file=${certDir}/server.pem`,
    `--key-file=${certDir}/server.key`,
    `--trusted-ca-file=${certDir}/ca.pem`,
    "--client-cert-auth",
  ];
}

/** etcd flags for JWT auth tokens, which carry the auth store's revision; `keyDir` as etcd sees it. */
export function jwtArgs(keyDir: string): string[] {
  return [`--auth-token=jwt,pub-key=${keyDir}/jwt.pub,priv-key=${keyDir}/jwt.key,sign-method=ES256`];
}

/** etcd3 options reaching a member secured this way, as `auth` (root by default, `false`: none). */
export function clientOptions(security: Security, auth: Credentials | false = ROOT): Partial<IOptions> {
  const options: Partial<IOptions> = {};
  if (security.tls)
    options.credentials = {
      rootCertificate: security.tls.ca,
      certChain: security.tls.clientCert,
      privateKey: security.tls.clientKey,
    };
  if (security.auth && auth) options.auth = auth;
  return options;
}

/** Turns authentication on: root, and `app` with read-write on APP_PREFIX only. */
export async function enableAuth(admin: Etcd3): Promise<void> {
  await admin.role("root").create();
  await (await admin.user(ROOT.username).create(ROOT.password)).addRole("root");
  const app = await admin.role("app").create();
  await app.grant({ permission: "Readwrite", range: admin.range({ prefix: APP_PREFIX }) });
  await (await admin.user(APP.username).create(APP.password)).addRole("app");
  await admin.auth.authEnable();
}
