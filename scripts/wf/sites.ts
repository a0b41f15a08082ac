/**
 * The website-fingerprinting benchmark's closed world: synthetic sites generated from a seed (the
 * same seed gives the same sites, byte for byte) and the HTTP servers that serve them on loopback.
 *
 * Each site is an HTML page with 10–80 sub-resources (scripts, styles, images, fonts) whose counts
 * and sizes follow per-site draws from log-normal distributions, so pages weigh from a few KiB to a
 * few MiB as real ones do. Some resources are found only after another has loaded (background
 * images in a style sheet, images a script inserts), and some live on a second host (a second
 * loopback port), as CDN-hosted assets do: the browser opens connections to both.
 */

export type Kind = "script" | "style" | "image" | "font";

export interface Resource {
  path: string;
  kind: Kind;
  size: number;
  /** 0: the page's own host; 1: the second host. */
  host: 0 | 1;
  /** What makes the browser fetch it: the HTML, the site's first style sheet, or its first script. */
  via: "html" | "css" | "script";
  /** Scripts only: how the HTML loads them. */
  mode?: "blocking" | "defer" | "async" | "body";
}

export interface Site {
  index: number;
  /** Path prefix on the first host: `/s007/`; the page is that path itself. */
  prefix: string;
  /** Size of the HTML page in bytes. */
  htmlSize: number;
  resources: Resource[];
}

/** Seeded PRNG (mulberry32): uniform in [0, 1). */
export function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function logNormal(r: () => number, median: number, sigma: number): number {
  // Box–Muller; 1 - r() keeps the logarithm's argument above 0.
  const z = Math.sqrt(-2 * Math.log(1 - r())) * Math.cos(2 * Math.PI * r());
  return median * Math.exp(sigma * z);
}

const clamp = (v: number, lo: number, hi: number) => Math.min(hi, Math.max(lo, v));

/** Median size (bytes) and spread of each kind, roughly as the HTTP Archive reports them. */
const SIZES: Record<Kind, [number, number]> = {
  script: [14_000, 1.1],
  style: [7_000, 0.9],
  image: [10_000, 1.4],
  font: [28_000, 0.4],
};
const EXT: Record<Kind, string> = { script: "js", style: "css", image: "png", font: "woff2" };
export const MIN_RESOURCES = 10;
export const MAX_RESOURCES = 80;
/** A page with its resources weighs at most this much: loads stay a few seconds at worst. */
export const MAX_SITE_BYTES = 4 * 1024 * 1024;

const ALPHA = "abcdefghijklmnopqrstuvwxyz0123456789";

/** Generates site `index` of the world made from `seed`. */
export function makeSite(seed: number, index: number): Site {
  const r = rng((seed * 1_000_003 + index * 7919) >>> 0);
  const pick = (lo: number, hi: number) => lo + Math.floor(r() * (hi - lo + 1));
  const n = pick(MIN_RESOURCES, MAX_RESOURCES);
  const scripts = Math.max(1, Math.round(n * (0.15 + 0.3 * r())));
  const styles = Math.max(1, Math.round(n * (0.04 + 0.1 * r())));
  const fonts = Math.min(4, Math.round(n * 0.06 * r()));
  const images = n - scripts - styles - fonts;
  const scale = logNormal(r, 1, 0.6);
  const second = 0.6 * r();
  const prefix = `/s${String(index).padStart(3, "0")}/`;
  const name = (kind: Kind) =>
    `${prefix}${kind === "image" ? "img" : "static"}/${
      Array.from({ length: pick(6, 24) }, () => ALPHA[Math.floor(r() * ALPHA.length)]).join("")
    }.${EXT[kind]}`;
  const make = (kind: Kind, via: Resource["via"], mode?: Resource["mode"]): Resource => {
    const [median, sigma] = SIZES[kind];
    return {
      path: name(kind),
      kind,
      size: Math.round(clamp(logNormal(r, median * scale, sigma), 200, 1_500_000)),
      host: r() < second ? 1 : 0,
      via,
      ...(mode ? { mode } : {}),
    };
  };
  const modes: Resource["mode"][] = ["blocking", "defer", "async", "body"];
  const resources: Resource[] = [
    ...Array.from({ length: styles }, () => make("style", "html")),
    ...Array.from(
      { length: scripts },
      (_, i) => make("script", "html", i ? modes[pick(0, 3)] : "body"),
    ),
    ...Array.from({ length: fonts }, () => make("font", "css")),
    // A quarter of the images come from the style sheet, a quarter from the first script.
    ...Array.from({ length: images }, () => {
      const x = r();
      return make("image", x < 0.25 ? "css" : x < 0.5 ? "script" : "html");
    }),
  ];
  let htmlSize = Math.round(clamp(logNormal(r, 25_000 * scale, 0.8), 3_000, 300_000));
  const total = htmlSize + resources.reduce((s, x) => s + x.size, 0);
  if (total > MAX_SITE_BYTES) {
    const k = MAX_SITE_BYTES / total;
    for (const x of resources) x.size = Math.floor(x.size * k);
    htmlSize = Math.floor(htmlSize * k);
  }
  // Floors that leave room for the markup and URLs each body must hold (siteBodies pads to size).
  const count = (via: Resource["via"]) => resources.filter((x) => x.via === via).length;
  for (const x of resources) x.size = Math.max(x.size, 200);
  const [style, script] = loaders(resources);
  style.size = Math.max(style.size, 300 + 120 * count("css"));
  script.size = Math.max(script.size, 300 + 100 * count("script"));
  htmlSize = Math.max(htmlSize, 2_000 + 130 * (count("html") + count("css")));
  return { index, prefix, htmlSize, resources };
}

/**
 * The site's first style sheet and first script (a body script, run during parsing): the style
 * sheet names the fonts and background images, the script inserts the images `via: "script"`.
 */
function loaders(resources: Resource[]): [Resource, Resource] {
  return [
    resources.find((x) => x.kind === "style")!,
    resources.find((x) => x.kind === "script")!,
  ];
}

/** The closed world: `count` sites from `seed`. */
export function makeSites(seed: number, count: number): Site[] {
  return Array.from({ length: count }, (_, i) => makeSite(seed, i));
}

/** Bytes of a site's bodies (page and every resource): what a complete load must carry. */
export function siteBytes(site: Site): number {
  return site.htmlSize + site.resources.reduce((s, x) => s + x.size, 0);
}

const WORDS = ("lorem ipsum dolor sit amet consectetur adipiscing elit sed do eiusmod tempor " +
  "incididunt ut labore et dolore magna aliqua enim ad minim veniam quis nostrud exercitation " +
  "ullamco laboris nisi aliquip ex ea commodo consequat").split(" ");

/** `size` bytes of ASCII text: `head`, lines of words behind `line`, and `tail` at the very end. */
function text(r: () => number, size: number, head: string, line: string, tail: string): string {
  if (head.length + tail.length > size) {
    throw new Error(`${size} bytes cannot hold the ${head.length + tail.length} fixed ones`);
  }
  let body = head;
  while (body.length + tail.length < size) {
    const n = 8 + Math.floor(r() * 8);
    body += `${line}${
      Array.from({ length: n }, () => WORDS[Math.floor(r() * WORDS.length)]).join(" ")
    }\n`;
  }
  return body.slice(0, size - tail.length) + tail;
}

/** Binary content: `prefix`, then seeded noise (incompressible, like media). */
function binary(r: () => number, size: number, prefix: number[]): Uint8Array<ArrayBuffer> {
  const b = new Uint8Array(size);
  const words = new Uint32Array(b.buffer, 0, size >> 2);
  for (let i = 0; i < words.length; i++) words[i] = r() * 4294967296;
  b.set(prefix.slice(0, size));
  return b;
}

/**
 * What binary bodies start with. Images are a valid 1×1 PNG (decoders stop at its end, before the
 * noise): Chromium reports no resource timing for a CSS background image it cannot decode.
 */
const PREFIX: Partial<Record<Kind, number[]>> = {
  // deno-fmt-ignore
  image: [
    137, 80, 78, 71, 13, 10, 26, 10, 0, 0, 0, 13, 73, 72, 68, 82, 0, 0, 0, 1, 0, 0, 0, 1, 8, 6, 0,
    0, 0, 31, 21, 196, 137, 0, 0, 0, 11, 73, 68, 65, 84, 120, 156, 99, 96, 0, 2, 0, 0, 5, 0, 1, 122,
    94, 171, 63, 0, 0, 0, 0, 73, 69, 78, 68, 174, 66, 96, 130,
  ],
  font: [0x77, 0x4f, 0x46, 0x32],
};

export interface Body {
  type: string;
  data: Uint8Array<ArrayBuffer>;
}

/**
 * Every body of `site`, keyed by host and path, with absolute URLs for the hosts at `origins`
 * (`http://127.0.0.1:PORT`). Text bodies are padded to their exact sizes (the URLs are part of
 * them), so a site's bytes do not depend on the ports.
 */
export function siteBodies(
  seed: number,
  site: Site,
  origins: [string, string],
): Map<string, Body>[] {
  const r = rng((seed ^ 0x5bd1e995) + site.index);
  const url = (x: Resource) => `${origins[x.host]}${x.path}`;
  const by = (via: Resource["via"], kind?: Kind) =>
    site.resources.filter((x) => x.via === via && (!kind || x.kind === kind));
  const te = new TextEncoder();
  const hosts = [new Map<string, Body>(), new Map<string, Body>()];
  const [firstStyle, firstScript] = loaders(site.resources);
  const cssImages = by("css", "image");
  const fonts = by("css", "font");
  for (const x of site.resources) {
    let body: string | Uint8Array<ArrayBuffer>;
    if (x.kind === "style") {
      const rules = x === firstStyle
        ? fonts.map((f, i) =>
          `@font-face{font-family:f${i};src:url(${
            url(f)
          }) format("woff2")}\n.t${i}{font-family:f${i}}\n`
        ).join("") + cssImages.map((m, i) => `.bg${i}{background:url(${url(m)})}\n`).join("")
        : "";
      body = text(r, x.size, `${rules}body{margin:0}\n`, "/* ", "*/\n.x{color:#333}\n");
    } else if (x.kind === "script") {
      const code = x === firstScript
        ? `(function(){for(const u of ${JSON.stringify(by("script").map(url))}){` +
          `const i=document.createElement("img");i.src=u;i.width=1;document.body.appendChild(i)}})();\n`
        : "";
      body = text(r, x.size, `${code}"use strict";\n`, "// ", "void 0;\n");
    } else {
      body = binary(r, x.size, PREFIX[x.kind]!);
    }
    hosts[x.host].set(x.path, {
      type: {
        script: "application/javascript",
        style: "text/css",
        image: "image/png",
        font: "font/woff2",
      }[x.kind],
      data: typeof body === "string" ? te.encode(body) : body,
    });
  }
  const scriptTag = (x: Resource) =>
    `<script src="${url(x)}"${
      x.mode === "defer" ? " defer" : x.mode === "async" ? " async" : ""
    }></script>\n`;
  const head = `<!doctype html>\n<html lang="en"><head><meta charset="utf-8">\n` +
    `<meta name="viewport" content="width=device-width, initial-scale=1">\n` +
    `<title>Site ${site.index}</title>\n` +
    by("html", "style").map((x) => `<link rel="stylesheet" href="${url(x)}" crossorigin>\n`).join(
      "",
    ) +
    by("html", "script").filter((x) => x.mode !== "body").map(scriptTag).join("") +
    `</head><body>\n` +
    cssImages.map((_, i) => `<div class="bg${i}" style="width:8px;height:8px"></div>\n`).join("") +
    fonts.map((_, i) => `<p class="t${i}">Aa</p>\n`).join("") +
    by("html", "image").map((x) => `<img src="${url(x)}" width="64" height="48" alt="">\n`).join(
      "",
    );
  const tail = by("html", "script").filter((x) => x.mode === "body").map(scriptTag).join("") +
    `</body></html>\n`;
  // Byte length equals character length: the page is ASCII.
  hosts[0].set(site.prefix, {
    type: "text/html; charset=utf-8",
    data: te.encode(text(r, site.htmlSize, head, "<p>", tail)),
  });
  return hosts;
}

export interface SiteServers {
  /** The first (page) host's port and the second host's. */
  ports: [number, number];
  /** `http://127.0.0.1:PORT` of each host. */
  origins: [string, string];
  /** Requests answered so far, per host. */
  requests: [number, number];
  close(): Promise<void>;
}

/**
 * Serves `sites` on two loopback ports with keep-alive and the headers a static site behind a
 * CDN sends (type, length, validators, caching, CORS and timing access for the second host).
 */
export function serveSites(seed: number, sites: Site[]): SiteServers {
  const servers: Deno.HttpServer<Deno.NetAddr>[] = [];
  const ports: number[] = [];
  const requests: [number, number] = [0, 0];
  const bodies: Map<string, Body>[] = [new Map(), new Map()];
  for (const host of [0, 1] as const) {
    const server = Deno.serve({
      hostname: "127.0.0.1",
      port: 0,
      onListen: () => {},
    }, (req) => {
      requests[host]++;
      const body = bodies[host].get(new URL(req.url).pathname);
      if (!body) return new Response("not found\n", { status: 404 });
      return new Response(body.data, {
        headers: {
          "content-type": body.type,
          "cache-control": "public, max-age=86400",
          "last-modified": "Mon, 03 Nov 2025 10:00:00 GMT",
          "etag": `"${body.data.length.toString(16)}-${host}"`,
          "server": "nginx",
          "accept-ranges": "bytes",
          "access-control-allow-origin": "*",
          "timing-allow-origin": "*",
        },
      });
    });
    servers.push(server);
    ports.push(server.addr.port);
  }
  const origins: [string, string] = [
    `http://127.0.0.1:${ports[0]}`,
    `http://127.0.0.1:${ports[1]}`,
  ];
  for (const site of sites) {
    const [a, b] = siteBodies(seed, site, origins);
    for (const [p, x] of a) bodies[0].set(p, x);
    for (const [p, x] of b) bodies[1].set(p, x);
  }
  return {
    ports: [ports[0], ports[1]],
    origins,
    requests,
    async close() {
      await Promise.all(servers.map((s) => s.shutdown()));
    },
  };
}
