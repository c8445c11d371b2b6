import { describe, expect, it } from 'vitest';
import { ident, join, param, qualified, raw, sql, typed } from '../../shared/sql';

describe('the sql tag', () => {
  it('numbers every value in order and keeps it out of the text', () => {
    const statement = sql`SELECT * FROM t WHERE a = ${"x'; DROP TABLE t; --"} AND b < ${5}`;
    expect(statement.text).toBe('SELECT * FROM t WHERE a = $1 AND b < $2');
    expect(statement.values).toEqual(["x'; DROP TABLE t; --", 5]);
  });

  it('inlines fragments and renumbers their values', () => {
    const predicate = sql`created_at < ${'2026-01-01'}`;
    const statement = sql`DELETE FROM t WHERE ${predicate} AND id > ${7} RETURNING ${join([ident('id'), ident('note')])}`;
    expect(statement.text).toBe('DELETE FROM t WHERE created_at < $1 AND id > $2 RETURNING "id", "note"');
    expect(statement.values).toEqual(['2026-01-01', 7]);
  });

  it('binds a param once wherever it is used, and repeated plain values as often as they appear', () => {
    const cutoff = param('2026-01-01');
    const statement = sql`SELECT ${cutoff}, ${1}, ${cutoff}, ${1}`;
    expect(statement.text).toBe('SELECT $1, $2, $1, $3');
    expect(statement.values).toEqual(['2026-01-01', 1, 1]);
  });

  it('quotes identifiers and splices raw text as it is', () => {
    expect(sql`SELECT ${ident('we"ird')} FROM ${qualified({ schema: 'app', name: 'Orders' })} WHERE x >= ${'a'}::${raw('timestamptz')}`.text).toBe(
      'SELECT "we""ird" FROM "app"."Orders" WHERE x >= $1::timestamptz',
    );
  });

  it('casts a typed value to its type wherever it is used, bound once', () => {
    const cutoff = typed('2026-01-01', 'timestamp with time zone');
    const statement = sql`SELECT ${cutoff}, ${typed(7, 'bigint')}, ${cutoff}`;
    expect(statement.text).toBe('SELECT $1::timestamp with time zone, $2::bigint, $1::timestamp with time zone');
    expect(statement.values).toEqual(['2026-01-01', 7]);
  });

  it('joins nothing into nothing', () => {
    expect(join([]).text).toBe('');
    expect(sql`${join([sql`${1}`, sql`${2}`], ' OR ')}`.text).toBe('$1 OR $2');
  });
});
