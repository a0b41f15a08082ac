/**
 * A TOML reader that knows the line of every key: smol-toml parses, but reports positions only for
 * syntax errors, so messages about values find their line here. A table is read key by key and
 * remembers which keys were read, so a front end can refuse the ones it does not know. A value
 * that is refused is recorded as its key's problem and reads as absent, so reading goes on and a
 * load names every problem of the file.
 */

import { parse, TomlError } from "smol-toml";
import { ConfigError, type Problems, shown } from "./error.ts";

/** Parses `text`; a syntax error is a ConfigError naming `source` and the line. */
export function parseToml(text: string, source: string): Record<string, unknown> {
  try {
    return parse(text);
  } catch (e) {
    if (!(e instanceof TomlError)) throw e;
    const what = e.message.split("\n")[0].replace(/^Invalid TOML document: /, "");
    throw new ConfigError(`${source} line ${e.line}: invalid TOML: ${what}`);
  }
}

export function isTable(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v) && !(v instanceof Date);
}

/** Line numbers of table headers and `key = ` lines. */
export class Lines {
  #at = new Map<string, number>();
  #lines: string[];

  constructor(text: string) {
    this.#lines = text.split(/\r?\n/);
    let table = "";
    this.#lines.forEach((raw, i) => {
      const l = raw.trim();
      const header = /^\[\[?\s*([^\]]+?)\s*\]\]?/.exec(l);
      const key = /^([A-Za-z0-9_."' -]+?)\s*=/.exec(l);
      let path: string | null = null;
      if (header) path = table = unquote(header[1]);
      else if (key) path = (table ? `${table}.` : "") + unquote(key[1]);
      if (path !== null && !this.#at.has(path)) this.#at.set(path, i + 1);
    });
  }

  /** Line of `path` ("server", "server.bind_addr"), or null when it cannot be found. */
  of(path: string): number | null {
    return this.#at.get(path) ?? null;
  }

  /** Line of `entry` inside the list that starts at line `from`. */
  entry(from: number, entry: string): number {
    for (let i = from - 1; i < this.#lines.length; i++) {
      if (this.#lines[i].includes(JSON.stringify(entry)) || this.#lines[i].includes(`'${entry}'`)) {
        return i + 1;
      }
    }
    return from;
  }
}

function unquote(path: string): string {
  return path.split(".").map((p) => p.trim().replace(/^(["'])(.*)\1$/, "$2")).join(".");
}

/**
 * One table of a document, read key by key. Names a key as `[table] key (file line N)`, collects
 * warnings in the order of the file, records problems in `problems`, and remembers which keys were
 * read, which of those were applied (present and not ignored) and which required ones were missing.
 */
export class TomlTable {
  readonly read = new Set<string>();
  readonly applied = new Set<string>();
  /** Required keys found missing, for a front end to point at a misspelt one. */
  readonly missed: string[] = [];
  #warnings: [number, string][] = [];

  constructor(
    readonly name: string,
    readonly values: Record<string, unknown>,
    private lines: Lines,
    readonly source: string,
    readonly problems: Problems,
  ) {}

  line(key: string): number | null {
    return this.lines.of(`${this.name}.${key}`);
  }

  label(key: string, line = this.line(key)): string {
    return `[${this.name}] ${key} (${this.source}${line ? ` line ${line}` : ""})`;
  }

  /** Records `what` as the problem of `key`; returns undefined, what a refused value reads as. */
  fail(key: string, what: string): undefined {
    this.problems.add(this.covers(key), new ConfigError(`${this.label(key)}: ${what}`));
    return undefined;
  }

  /**
   * The names a problem of `key` stands for, so that nothing checks them again: `[table] key`; a
   * front end adds the settings the key sets.
   */
  covers(key: string): string[] {
    return [`[${this.name}] ${key}`];
  }

  warn(key: string, what: string): void {
    this.#warnings.push([this.line(key) ?? 0, `${this.label(key)}: ${what}`]);
  }

  /** The warnings so far, in the order of their lines. */
  warnings(): string[] {
    return this.#warnings.sort((a, b) => a[0] - b[0]).map(([, w]) => w);
  }

  /** Records that the required `key` is missing; `why` says what it is for. */
  missing(key: string, why = ""): undefined {
    const at = `${this.source} line ${this.lines.of(this.name) ?? 1}`;
    const e = new ConfigError(`${at}: [${this.name}] needs ${key}${why}`);
    if (this.problems.add(this.covers(key), e)) this.missed.push(key);
    return undefined;
  }

  /** Keys present in the table that nothing read. */
  unread(): string[] {
    return Object.keys(this.values).filter((k) => !this.read.has(k));
  }

  /**
   * The raw value, or undefined when absent. `ignored` says why a present key does not apply;
   * it is then warned about and reads as absent.
   */
  take(key: string, ignored?: string): unknown {
    this.read.add(key);
    if (!(key in this.values)) return undefined;
    if (ignored) {
      this.warn(key, ignored);
      return undefined;
    }
    this.applied.add(key);
    return this.values[key];
  }

  str(key: string, ignored?: string, secret = false): string | undefined {
    const v = this.take(key, ignored);
    if (v !== undefined && typeof v !== "string") {
      return this.fail(key, `${secret ? "the value" : shown(v)} is not a string`);
    }
    return v;
  }

  bool(key: string, ignored?: string): boolean | undefined {
    const v = this.take(key, ignored);
    if (v !== undefined && typeof v !== "boolean") {
      return this.fail(key, `${shown(v)} is not true or false`);
    }
    return v;
  }

  list(key: string): string[] {
    const v = this.take(key) ?? [];
    if (!Array.isArray(v) || !v.every((x) => typeof x === "string" || typeof x === "number")) {
      this.fail(key, `${shown(v)} is not a list of strings`);
      return [];
    }
    return v.map(String);
  }

  /**
   * Runs a parser on each list entry; an entry it refuses is the key's problem (naming the entry's
   * own line) and is left out.
   */
  entries<T>(key: string, parse: (s: string) => T): T[] {
    return this.list(key).flatMap((e) => {
      try {
        return [parse(e)];
      } catch (err) {
        if (!(err instanceof ConfigError)) throw err;
        const line = this.lines.entry(this.line(key) ?? 1, e);
        this.problems.add(
          this.covers(key),
          new ConfigError(`${this.label(key, line)}: ${err.message}`),
        );
        return [];
      }
    });
  }
}
