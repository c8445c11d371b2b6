import { type QualifiedName, quoteIdent, quoteQualified } from './identifiers';

/**
 * SQL text with its bind values, written as a template literal: every interpolated value becomes
 * a `$n` parameter, numbered in order, so no parameter number and no value is ever spliced into
 * the text by hand.
 *
 *   sql`SELECT * FROM ${qualified(table)} WHERE ${ident(column)} < ${cutoff} LIMIT ${limit}`
 *
 * Interpolated `Sql` fragments are inlined with their own values renumbered. Identifiers go
 * through `ident`/`qualified` (quoted); `raw` is only for fragments the code itself chose from a
 * closed set (a type name, a keyword), never for input. A `param` used in several places is
 * bound once. A `Sql` is a node-postgres query config: `client.query(statement)`.
 */
export class Sql {
  readonly text: string;
  readonly values: unknown[];

  constructor(readonly pieces: ReadonlyArray<string | Param>) {
    const numbers = new Map<Param, number>();
    this.values = [];
    let text = '';
    for (const piece of pieces) {
      if (typeof piece === 'string') {
        text += piece;
        continue;
      }
      let number = numbers.get(piece);
      if (number === undefined) {
        this.values.push(piece.value);
        number = this.values.length;
        numbers.set(piece, number);
      }
      text += piece.type ? `$${number}::${piece.type}` : `$${number}`;
    }
    this.text = text;
  }
}

/** A bind value; the same `Param` interpolated twice is one `$n`. */
export class Param {
  constructor(
    readonly value: unknown,
    /** A type name the code chose (from the catalog or a closed set): the value is cast to it where it is used. */
    readonly type?: string,
  ) {}
}

export function sql(strings: TemplateStringsArray, ...args: unknown[]): Sql {
  const pieces: Array<string | Param> = [];
  strings.forEach((text, i) => {
    pieces.push(text);
    if (i >= args.length) return;
    const arg = args[i];
    if (arg instanceof Sql) pieces.push(...arg.pieces);
    else pieces.push(arg instanceof Param ? arg : new Param(arg));
  });
  return new Sql(pieces);
}

/** A value bound once however often the statement uses it. */
export function param(value: unknown): Param {
  return new Param(value);
}

/**
 * A bind value cast to `type` (`$n::type`): a type name the code chose, never input. Where the
 * statement cannot take bind parameters (binary COPY), the cast goes with the value into one
 * subquery, evaluated once rather than for every row.
 */
export function typed(value: unknown, type: string): Param {
  return new Param(value, type);
}

/** Text spliced as it is: only for fragments the code chose from a closed set, never for input. */
export function raw(text: string): Sql {
  return new Sql([text]);
}

/** A quoted identifier. */
export function ident(name: string): Sql {
  return raw(quoteIdent(name));
}

/** A quoted `schema.table`. */
export function qualified(name: QualifiedName): Sql {
  return raw(quoteQualified(name));
}

/** Fragments joined by `separator` (a column list, a list of conditions). */
export function join(fragments: readonly Sql[], separator = ', '): Sql {
  return new Sql(fragments.flatMap((fragment, i) => (i === 0 ? fragment.pieces : [separator, ...fragment.pieces])));
}
