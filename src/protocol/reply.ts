/**
 * Result codes carried by OPEN_FAIL and RESET frames. They are SOCKS5's reply codes (RFC 1928), so
 * the entry can hand the exit's outcome to a SOCKS client unchanged.
 */

export const Reply = {
  SUCCEEDED: 0,
  GENERAL_FAILURE: 1,
  NOT_ALLOWED: 2,
  NETWORK_UNREACHABLE: 3,
  HOST_UNREACHABLE: 4,
  CONNECTION_REFUSED: 5,
  TTL_EXPIRED: 6,
  COMMAND_NOT_SUPPORTED: 7,
  ADDRESS_TYPE_NOT_SUPPORTED: 8,
} as const;
