/** Process-wide counters that tell an operator what the tunnel has been through. */

export const metrics = {
  sessionsOpened: 0,
  sessionsResumed: 0,
  legsLost: 0,
  legReconnects: 0,
  framesReplayed: 0,
  handshakesRefused: 0,
  streamsOpened: 0,
  streamsFailed: 0,
};

export type Metrics = typeof metrics;
