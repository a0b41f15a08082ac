/**
 * Renders the systemd unit for a half-tunnel server or client: a config check before every start
 * (`half-tunnel check`), restart forever once started, a dedicated non-root user that may still
 * bind low ports, and the sandboxing a network daemon can live with.
 */

export interface UnitOptions {
  type: "server" | "client";
  /** Absolute command line that starts the service (executable first). */
  exec: string[];
  user: string;
  configPath: string;
}

export function unitName(type: "server" | "client"): string {
  return `half-tunnel-${type}.service`;
}

/** Quotes an argument for systemd's ExecStart (double quotes, backslash escapes). */
function quote(arg: string): string {
  return /^[A-Za-z0-9_@%+=:,./-]+$/.test(arg) ? arg : `"${arg.replace(/(["\\])/g, "\\$1")}"`;
}

/**
 * V8 flags the tunnel runs with wherever it is deployed (baked into compiled binaries, and in
 * DEPLOYED_ENV): semi-spaces of at most 2 MiB. V8 grows the young generation to 16 MiB per
 * semi-space under allocation pressure; the data path allocates little per frame, so the larger
 * young generation only held memory (5-20 MiB per process in 8-stream transfers, at the same CPU
 * per GB and connection rate).
 */
export const V8_FLAGS: readonly string[] = ["--max-semi-space-size=2"];

/**
 * The environment the unit (and the Dockerfile) run the tunnel with: buffers of 128 KiB and more
 * always come from mmap (glibc otherwise raises that threshold after big frees and keeps serving
 * big buffers from its heaps), so memory freed after a burst (or an abuse) goes back to the system;
 * and V8_FLAGS for launches through `deno run`. Not 64 KiB: node:tls (clients that skip
 * certificate verification) allocates just over that per read, and every read became an mmap and
 * munmap, which halved those clients' throughput (3.4 to 1.9 Gbit/s). Tests, `deno task abuse` and
 * `deno task bench` measure with it too; `./main.ts` (its first line), `deno task demo` and the
 * demo's printed commands start with it (service_test.ts checks the first two against this). A
 * plain `deno run -A main.ts` cannot get it: V8 fixes the young generation's size when the process
 * starts, before any of our code runs. DENO_NO_UPDATE_CHECK: `deno run` otherwise looks up
 * dl.deno.land once a day from the tunnel's own process (a DNS query and an HTTPS request that
 * mark the host as running Deno, and a dial off the machine in tests).
 */
export const DEPLOYED_ENV: Readonly<Record<string, string>> = {
  MALLOC_MMAP_THRESHOLD_: "131072",
  DENO_V8_FLAGS: V8_FLAGS.join(","),
  DENO_NO_UPDATE_CHECK: "1",
};

/**
 * The module cache of a unit that runs `deno run main.ts` (CacheDirectory=half-tunnel, which
 * systemd hands to the service user). `service install` fills it, so the first start needs no
 * network; a compiled binary never reads it.
 */
export const UNIT_DENO_DIR = "/var/cache/half-tunnel";
const CACHE_DIRECTORY = UNIT_DENO_DIR.slice("/var/cache/".length);

/**
 * What the unit's sandbox hides from the service, by the setting that hides it: code (or a config)
 * under these paths is not there for the service, which then fails to start.
 */
export const HIDDEN_FROM_UNIT: Readonly<Record<string, readonly string[]>> = {
  "ProtectHome=true": ["/home", "/root", "/run/user"],
  "PrivateTmp=true": ["/tmp", "/var/tmp"],
};

/** The sandbox setting that hides `path` from the service, or null when the service can see it. */
export function hiddenBy(path: string): string | null {
  for (const [setting, dirs] of Object.entries(HIDDEN_FROM_UNIT)) {
    if (dirs.some((d) => path === d || path.startsWith(`${d}/`))) return setting;
  }
  return null;
}

/** Exit code of half-tunnel for a config (or command line) it refuses. */
export const CONFIG_ERROR_EXIT = 2;

export function renderUnit(o: UnitOptions): string {
  const configFlag = o.configPath.endsWith(".toml") ? "-c" : "--config";
  const role = o.type === "server" ? "server" : "client";
  const exec = [...o.exec, role, configFlag, o.configPath];
  const check = [...o.exec, "check", role, configFlag, o.configPath, "--quiet"];
  return `[Unit]
Description=half-tunnel ${o.type}
Documentation=https://github.com/half-tunnel/half-tunnel
After=network-online.target
Wants=network-online.target
# A config the check refuses fails each start at once; after 5 such starts within 30 s the unit
# stays failed instead of retrying forever (fix the config, then \`systemctl reset-failed\` and
# start it). A tunnel that runs for more than 5 s between failures never reaches this limit.
StartLimitIntervalSec=30
StartLimitBurst=5

[Service]
Type=simple
# Refuses a broken config (edited since the last start) with the reason, before anything runs.
ExecStartPre=${check.map(quote).join(" ")}
ExecStart=${exec.map(quote).join(" ")}
ExecReload=/bin/kill -HUP $MAINPID
Restart=always
RestartSec=3
# A config error found by the tunnel itself at start is not retried either.
RestartPreventExitStatus=${CONFIG_ERROR_EXIT}
LimitNOFILE=1048576
User=${o.user}
Group=${o.user}
# Where a non-compiled install keeps its module cache; unused by compiled binaries.
CacheDirectory=${CACHE_DIRECTORY}
Environment=DENO_DIR=${UNIT_DENO_DIR}
# Buffers of 128 KiB and more come from mmap, so memory freed after a burst (or an abuse) goes back
# to the system instead of staying in the allocator's heap; a small V8 young generation.
${Object.entries(DEPLOYED_ENV).map(([k, v]) => `Environment=${k}=${v}`).join("\n")}
AmbientCapabilities=CAP_NET_BIND_SERVICE
CapabilityBoundingSet=CAP_NET_BIND_SERVICE
NoNewPrivileges=true
ProtectSystem=strict
${Object.keys(HIDDEN_FROM_UNIT).join("\n")}
PrivateDevices=true
ProtectKernelTunables=true
ProtectKernelModules=true
ProtectKernelLogs=true
ProtectControlGroups=true
ProtectClock=true
ProtectHostname=true
RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX
RestrictNamespaces=true
RestrictRealtime=true
RestrictSUIDSGID=true
LockPersonality=true
ReadOnlyPaths=/etc/half-tunnel

[Install]
WantedBy=multi-user.target
`;
}
