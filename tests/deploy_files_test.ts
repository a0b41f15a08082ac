/**
 * What can be checked of the deployment files without Docker (which this machine cannot run; the
 * release workflow builds, runs and pushes the image): deployments/Dockerfile copies paths that
 * exist and are not ignored, pins the Deno the release compiles with and sets the deployed
 * environment; deployments/compose.yaml is a server and a client whose settings the real config
 * loader accepts, keyed only from the environment; and .github/workflows/release.yml smoke-tests
 * the binaries and pushes the image before it publishes anything.
 */

import assert from "node:assert/strict";
import { parse } from "yaml";
import { archiveName } from "../scripts/compile.ts";
import { generateKey } from "../src/config/keygen.ts";
import { loadConfig } from "../src/config/load.ts";
import type { Config } from "../src/config/model.ts";
import { DEPLOYED_ENV } from "../src/service/unit.ts";
import { VERSION } from "../src/version.ts";

const root = new URL("..", import.meta.url).pathname;
const read = (path: string) => Deno.readTextFile(`${root}${path}`);

/** Dockerfile instructions as [INSTRUCTION, rest of the line], comments and blank lines left out. */
async function dockerfile(): Promise<[string, string][]> {
  return (await read("deployments/Dockerfile")).split("\n")
    .filter((l) => l.trim() !== "" && !l.trimStart().startsWith("#"))
    .map((l) => {
      const m = /^(\w+)\s+(.*)$/.exec(l.trim());
      assert.ok(m, `Dockerfile line ${JSON.stringify(l)} is not INSTRUCTION ARGS`);
      return [m[1].toUpperCase(), m[2]];
    });
}

/** The Deno version the Dockerfile pins (its DENO_VERSION build argument). */
async function pinnedDeno(): Promise<string> {
  const arg = (await dockerfile()).find(([i, a]) => i === "ARG" && a.startsWith("DENO_VERSION="));
  assert.ok(arg, "the Dockerfile has no ARG DENO_VERSION=…");
  return arg[1].slice("DENO_VERSION=".length);
}

/** The port of a listen address (":8080", "0.0.0.0:1080", "[::]:8081"). */
const portOf = (addr: string) => Number(addr.slice(addr.lastIndexOf(":") + 1));

Deno.test("the Dockerfile pins a Deno release and builds FROM that tag", async () => {
  const version = await pinnedDeno();
  assert.match(version, /^\d+\.\d+\.\d+$/, "a full version, not latest or a major");
  const from = (await dockerfile()).filter(([i]) => i === "FROM").map(([, a]) => a);
  assert.deepEqual(
    from.map((f) => f.replaceAll("${DENO_VERSION}", version)),
    [`denoland/deno:${version}`],
  );
});

Deno.test("every COPY source exists in the build context and is not in the ignore file", async () => {
  // The build context is the repository root (`docker build -f deployments/Dockerfile .`).
  const ignored = (await read("deployments/Dockerfile.dockerignore")).split("\n")
    .map((l) => l.trim()).filter((l) => l !== "" && !l.startsWith("#"));
  for (const pattern of ignored) {
    assert.doesNotMatch(pattern, /[*?[!]/, "this check reads plain paths in the ignore file only");
  }
  const copies = (await dockerfile()).filter(([i]) => i === "COPY");
  assert.ok(copies.length > 0);
  for (const [, args] of copies) {
    const words = args.split(/\s+/).filter((w) => !w.startsWith("--"));
    for (const src of words.slice(0, -1)) {
      await Deno.stat(`${root}${src}`).catch(() =>
        assert.fail(`COPY ${src}: not in the repository`)
      );
      const hit = ignored.find((p) => src === p || src.startsWith(`${p}/`));
      assert.equal(hit, undefined, `COPY ${src} is excluded by the ignore file (${hit})`);
    }
  }
});

Deno.test("the image runs with the deployed environment and exposes the default leg ports", async () => {
  const lines = await dockerfile();
  const env = Object.fromEntries(
    lines.filter(([i]) => i === "ENV").map((
      [, a],
    ) => [a.slice(0, a.indexOf("=")), a.slice(a.indexOf("=") + 1)]),
  );
  assert.deepEqual(env, DEPLOYED_ENV, "ENV lines = DEPLOYED_ENV in src/service/unit.ts");
  const server = await loadConfig({ role: "server", env: { HT_AUTH_KEY: generateKey() } });
  const exposed = lines.filter(([i]) => i === "EXPOSE").flatMap(([, a]) => a.split(/\s+/));
  for (const addr of [server.server.upstreamAddr, server.server.downstreamAddr]) {
    assert.ok(exposed.includes(String(portOf(addr))), `EXPOSE ${portOf(addr)} (${addr})`);
  }
});

interface ComposeService {
  image: string;
  build: { context: string; dockerfile: string };
  command: string[];
  environment: Record<string, string>;
  ports: string[];
  depends_on?: string[];
}

/** The compose file's services, with each one's config as the real loader reads it. */
async function composeServices(): Promise<Record<string, ComposeService & { cfg: Config }>> {
  const doc = parse(await read("deployments/compose.yaml"), { merge: true });
  const key = generateKey();
  const out: Record<string, ComposeService & { cfg: Config }> = {};
  for (const [name, svc] of Object.entries(doc.services as Record<string, ComposeService>)) {
    const role = svc.command[0];
    assert.ok(role === "server" || role === "client", `${name}: command ${svc.command}`);
    assert.equal(svc.command.length, 1, `${name}: settings go in environment`);
    const env: Record<string, string> = {};
    for (const [k, v] of Object.entries(svc.environment)) {
      // Compose substitutes ${HT_AUTH_KEY:?…}; every other value is literal.
      env[k] = k === "HT_AUTH_KEY" ? key : String(v);
    }
    const cfg = await loadConfig({ role, env });
    assert.deepEqual(cfg.warnings, [], `${name}: the config loader warns`);
    out[name] = { ...svc, cfg };
  }
  return out;
}

Deno.test("compose runs a server and a client that the config loader accepts", async () => {
  const s = await composeServices();
  assert.deepEqual(Object.keys(s).sort(), ["client", "server"]);
  const { server, client } = { server: s.server.cfg.server, client: s.client.cfg.client };
  // The client reaches the server by its service name, on the server's ports and paths.
  assert.equal(
    client.upstreamUrl,
    `ws://server:${portOf(server.upstreamAddr)}${server.upstreamPath}`,
  );
  assert.equal(
    client.downstreamUrl,
    `ws://server:${portOf(server.downstreamAddr)}${server.downstreamPath}`,
  );
  assert.deepEqual(s.client.depends_on, ["server"]);
  const published = (svc: ComposeService) => svc.ports.map((p) => p.split(":"));
  for (const addr of [server.upstreamAddr, server.downstreamAddr]) {
    assert.ok(published(s.server).some((p) => Number(p.at(-1)) === portOf(addr)), `${addr}`);
  }
  // A proxy without credentials is published on the host's loopback only.
  assert.equal(client.socks5?.username, "");
  assert.deepEqual(published(s.client), [[
    "127.0.0.1",
    "1080",
    String(portOf(client.socks5!.listen)),
  ]]);
});

Deno.test("compose takes the key from the environment only and builds this repository", async () => {
  const install = await read("scripts/install.sh");
  const repo = /^REPO=\$\{HT_REPO:-([^}]+)\}$/m.exec(install)?.[1];
  assert.ok(repo, "scripts/install.sh names its default repository");
  for (const [name, svc] of Object.entries(await composeServices())) {
    assert.match(
      svc.environment.HT_AUTH_KEY,
      /^\$\{HT_AUTH_KEY:\?.+\}$/,
      `${name}: the key is required from the environment or .env, with no default`,
    );
    for (const [k, v] of Object.entries(svc.environment)) {
      if (k !== "HT_AUTH_KEY") assert.ok(!String(v).includes("$"), `${name}: ${k} is literal`);
    }
    // The released image by default (the one the release pushes to GHCR), or built from here.
    assert.equal(svc.image, `\${HT_IMAGE:-ghcr.io/${repo}:latest}`, name);
    const context = new URL(svc.build.context, `file://${root}deployments/`).pathname;
    assert.equal(context.replace(/\/?$/, "/"), root, `${name}: build context`);
    assert.equal(svc.build.dockerfile, "deployments/Dockerfile", name);
  }
});

interface Step {
  name?: string;
  run?: string;
  env?: Record<string, string>;
}

Deno.test("the release smoke-tests the binaries and pushes the image before publishing", async () => {
  const wf = parse(await read(".github/workflows/release.yml"));
  assert.equal(
    wf.env.DENO_VERSION,
    await pinnedDeno(),
    "release.yml and the Dockerfile pin one Deno",
  );
  const ci = (await read(".ci/install")).match(/^DENO_VERSION=(\S+)$/m)?.[1];
  assert.equal(ci, wf.env.DENO_VERSION, ".ci/install installs the Deno the release pins");
  assert.equal(wf.permissions.packages, "write", "GITHUB_TOKEN may push to GHCR");
  const steps: Step[] = wf.jobs.release.steps;
  const at = (what: string, re: RegExp) => {
    const i = steps.findIndex((s) => s.run && re.test(s.run));
    assert.ok(i >= 0, `no step ${what}`);
    return i;
  };
  at("installs the pinned Deno", /npm install -g "deno@\$\{DENO_VERSION\}"/);
  const compile = at("compiles", /deno task compile/);
  const smoke = at("smoke-tests", /scripts\/smoke_release\.sh /);
  const push = at("pushes the image", /docker push "\$image:\$v"/);
  const publish = at("publishes", /gh release create/);
  assert.ok(compile < smoke && smoke < push && push < publish, "compile, smoke, push, publish");
  // The smoke test unpacks the archive compile.ts names for Linux x64.
  const linux = archiveName("x86_64-unknown-linux-gnu").replace(VERSION, "${v}");
  assert.ok(steps[smoke].run!.includes(linux), `the smoke step unpacks ${linux}`);
  assert.match(steps[push].run!, /docker build -f deployments\/Dockerfile /);
  const mode = (await Deno.stat(`${root}scripts/smoke_release.sh`)).mode!;
  assert.ok(mode & 0o100, "scripts/smoke_release.sh is executable");
});
