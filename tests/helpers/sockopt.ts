/**
 * Socket options as the kernel reports them (getsockopt through libc, Linux), for tests that check
 * what src/transport/socket_native.ts set on a descriptor it found.
 */

import { native } from "../../src/transport/socket_native.ts";

const SOL_SOCKET = 1;
const SO_KEEPALIVE = 9;
const IPPROTO_TCP = 6;
const TCP_NODELAY = 1;
const TCP_KEEPIDLE = 4;

function intOption(fd: number, level: number, name: number): number {
  const v = new Int32Array(1), len = new Uint32Array([4]);
  const r = native()!.libc.getsockopt(
    fd,
    level,
    name,
    new Uint8Array(v.buffer),
    new Uint8Array(len.buffer),
  );
  if (r !== 0) throw new Error(`getsockopt(${fd}, ${level}, ${name}) failed`);
  return v[0];
}

/** TCP_NODELAY of a socket (1 or 0). */
export function noDelay(fd: number): number {
  return intOption(fd, IPPROTO_TCP, TCP_NODELAY);
}

/** TCP keepalive's idle time of a socket in seconds, 0 when keepalive is off. */
export function keepaliveIdle(fd: number): number {
  return intOption(fd, SOL_SOCKET, SO_KEEPALIVE) === 0
    ? 0
    : intOption(fd, IPPROTO_TCP, TCP_KEEPIDLE);
}
