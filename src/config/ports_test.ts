import assert from "node:assert/strict";
import { ConfigError } from "./error.ts";
import {
  forwarderParser,
  isHost,
  parseDialAddr,
  parseForwarder,
  parseListenAddr,
  parsePortMapping,
  parseStaticForward,
} from "./ports.ts";

Deno.test("ports: every form parses", () => {
  // entry → [bindHost, first, last, targetHost, targetPort]
  const table: [string, [string, number, number, string, number | null]][] = [
    ["443", ["0.0.0.0", 443, 443, "", 443]],
    ["4000=5000", ["0.0.0.0", 4000, 4000, "", 5000]],
    ["127.0.0.2:443=5201", ["127.0.0.2", 443, 443, "", 5201]],
    ["443=1.1.1.1:5201", ["0.0.0.0", 443, 443, "1.1.1.1", 5201]],
    ["127.0.0.2:443=1.1.1.1:5201", ["127.0.0.2", 443, 443, "1.1.1.1", 5201]],
    ["443-600", ["0.0.0.0", 443, 600, "", null]],
    ["443-600=5201", ["0.0.0.0", 443, 600, "", 5201]],
    ["443-600=1.1.1.1:5201", ["0.0.0.0", 443, 600, "1.1.1.1", 5201]],
    ["443-600:5201", ["0.0.0.0", 443, 600, "", 5201]],
    ["127.0.0.2:443-600=5201", ["127.0.0.2", 443, 600, "", 5201]],
    ["127.0.0.2:443-600:5201", ["127.0.0.2", 443, 600, "", 5201]],
    ["127.0.0.2:443-600", ["127.0.0.2", 443, 600, "", null]],
    ["[::1]:443=[2001:db8::1]:5201", ["::1", 443, 443, "2001:db8::1", 5201]],
    ["[::]:443-445", ["::", 443, 445, "", null]],
    ["443=[::1]:22", ["0.0.0.0", 443, 443, "::1", 22]],
    ["443=example.org:5201", ["0.0.0.0", 443, 443, "example.org", 5201]],
    ["443=localhost:80", ["0.0.0.0", 443, 443, "localhost", 80]],
    ["443-443", ["0.0.0.0", 443, 443, "", 443]],
    [" 8080 = 80 ", ["0.0.0.0", 8080, 8080, "", 80]],
    ["1=65535", ["0.0.0.0", 1, 1, "", 65535]],
    ["65535", ["0.0.0.0", 65535, 65535, "", 65535]],
  ];
  for (const [text, want] of table) {
    const m = parsePortMapping(text);
    assert.deepEqual(
      [m.bindHost, m.bindPortStart, m.bindPortEnd, m.targetHost, m.targetPort],
      want,
      text,
    );
    assert.equal(m.source, text.trim());
  }
});

Deno.test("ports: bad entries are refused, naming the entry and the fault", () => {
  const table: [string, RegExp][] = [
    ["0", /port 0 is out of range 1\.\.65535/],
    ["65536", /port 65536 is out of range/],
    ["443=0", /port 0 is out of range/],
    ["443=host:65536", /port 65536 is out of range/],
    ["600-443", /port range 600-443 is reversed/],
    ["abc", /"abc" is not a port number/],
    ["443=", /has no port/],
    ["=443", /has no port/],
    ["443-", /"" is not a port number/],
    ["443=1.1.1.1:5201-5300", /a port range is not allowed here/],
    ["1=2=3", /more than one "="/],
    ["::1:443=80", /IPv6 addresses need brackets/],
    ["[::1:443=80", /is not \[IPv6\]:port/],
    ["[1.2.3.4]:443", /"1.2.3.4" is not an IPv6 address/],
    ["443=exa mple.org:80", /"exa mple.org" is not a host name or IP address/],
    ["443=1.1.1.300:80", /"1.1.1.300" is not a host name/],
    ["443:5201", /"443" is not a host name/],
    ["44.3", /"44.3" is not a port number/],
    ["1-2\n3", /is not a port number/],
  ];
  for (const [text, why] of table) {
    assert.throws(
      () => parsePortMapping(text),
      (e) =>
        e instanceof ConfigError && e.message.startsWith(JSON.stringify(text)) &&
        why.test(e.message),
      text,
    );
  }
  assert.throws(() => parsePortMapping(""), /empty port mapping/);
  assert.throws(
    () => parsePortMapping("53/sctp"),
    /the protocol after "\/" must be tcp, udp or tcp\+udp/,
  );
  assert.throws(() => parsePortMapping("  "), /empty port mapping/);
});

Deno.test("forwarder entries", () => {
  assert.deepEqual(parseForwarder("5201=127.0.0.1:9090"), [5201, {
    host: "127.0.0.1",
    port: 9090,
  }]);
  assert.deepEqual(parseForwarder("443=[::1]:8443"), [443, { host: "::1", port: 8443 }]);
  assert.deepEqual(parseForwarder("80=web.lan:8080"), [80, { host: "web.lan", port: 8080 }]);
  assert.throws(() => parseForwarder("5201"), /"5201" is not PORT=host:port/);
  assert.throws(() => parseForwarder("5201=9090"), /"5201=9090" needs a host/);
  assert.throws(() => parseForwarder("0=h:1"), /port 0 is out of range/);
  assert.throws(() => parseForwarder("x=h:1"), /"x" is not a port number/);
  const parse = forwarderParser();
  parse("4000=a.lan:1");
  assert.throws(
    () => parse(" 4000=b.lan:2"),
    /"4000=b\.lan:2": port 4000 is already forwarded by "4000=a\.lan:1"/,
  );
  assert.deepEqual(
    forwarderParser()("4000=b.lan:2"),
    [4000, { host: "b.lan", port: 2 }],
    "one list each",
  );
});

Deno.test("static forwards", () => {
  assert.deepEqual(parseStaticForward("8022=example.org:22"), {
    listenHost: "127.0.0.1",
    listenPort: 8022,
    targetHost: "example.org",
    targetPort: 22,
    udp: false,
    source: "8022=example.org:22",
  });
  const f = parseStaticForward("0.0.0.0:8022=10.0.0.5:22");
  assert.deepEqual([f.listenHost, f.targetHost], ["0.0.0.0", "10.0.0.5"]);
  const v6 = parseStaticForward("[::1]:8022=[2001:db8::2]:22");
  assert.deepEqual([v6.listenHost, v6.listenPort, v6.targetHost, v6.targetPort], [
    "::1",
    8022,
    "2001:db8::2",
    22,
  ]);
  assert.throws(() => parseStaticForward("8022=22"), /"8022=22" needs a target host/);
  assert.throws(() => parseStaticForward("8022"), /is not \[host:\]port=host:port/);
  assert.throws(() => parseStaticForward("8022-8030=h:22"), /a port range is not allowed/);
});

Deno.test("listen and dial addresses, host names", () => {
  assert.deepEqual(parseListenAddr(":8080"), { host: "", port: 8080 });
  assert.deepEqual(parseListenAddr("[::]:443"), { host: "::", port: 443 });
  assert.deepEqual(parseListenAddr("127.0.0.1:0"), { host: "127.0.0.1", port: 0 });
  assert.throws(() => parseListenAddr("8080"), /is not host:port or :port/);
  assert.throws(() => parseListenAddr(":99999"), /out of range 0\.\.65535/);
  assert.deepEqual(parseDialAddr("example.org:3080"), { host: "example.org", port: 3080 });
  assert.deepEqual(parseDialAddr("[2001:db8::1]:3080"), { host: "2001:db8::1", port: 3080 });
  assert.throws(() => parseDialAddr(":3080"), /is not host:port/);
  assert.throws(() => parseDialAddr("example.org"), /"example.org" is not a port number/);
  for (
    const h of ["example.org", "a-b.c_d.example.", "10.0.0.1", "::1", "2001:db8::8:1", "localhost"]
  ) {
    assert.ok(isHost(h), h);
  }
  for (
    const h of [
      "",
      "a b",
      "-a.org",
      "1.2.3",
      "256.1.1.1",
      "::g",
      "x".repeat(64) + ".org",
      "http://x",
    ]
  ) {
    assert.ok(!isHost(h), h);
  }
});

Deno.test("a protocol suffix says what a mapping publishes: TCP, UDP or both", () => {
  const p = (t: string) => {
    const m = parsePortMapping(t);
    return [m.bindPortStart, m.targetHost, m.targetPort, m.tcp, m.udp];
  };
  assert.deepEqual(p("443"), [443, "", 443, true, false]);
  assert.deepEqual(p("53=1.1.1.1:53/udp"), [53, "1.1.1.1", 53, false, true]);
  assert.deepEqual(p("5000=5001/tcp+udp"), [5000, "", 5001, true, true]);
  assert.deepEqual(p("443-445:5201/tcp"), [443, "", 5201, true, false]);
});
