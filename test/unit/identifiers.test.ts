import { describe, expect, it } from 'vitest';
import { ConfigError } from '../../shared/errors';
import { parseQualifiedName, quoteIdent, quoteLiteral } from '../../shared/identifiers';

describe('parseQualifiedName', () => {
  it('defaults the schema to public and keeps case as written', () => {
    expect(parseQualifiedName('events', 'table')).toEqual({ schema: 'public', name: 'events' });
    expect(parseQualifiedName('Audit.Events_2', 'table')).toEqual({ schema: 'Audit', name: 'Events_2' });
  });

  it.each([
    ['events; drop table x', 'not a plain identifier'],
    ['ev"ents', 'not a plain identifier'],
    ["ev'ents", 'not a plain identifier'],
    ['a.b.c', 'must be "table" or "schema.table"'],
    ['.events', 'empty name part'],
    ['public.', 'empty name part'],
    ['1events', 'not a plain identifier'],
    ['', 'empty name part'],
    ['événements', 'not a plain identifier'],
  ])('rejects %j naming the field', (input, message) => {
    expect(() => parseQualifiedName(input, 'targets[0].table')).toThrowError(ConfigError);
    expect(() => parseQualifiedName(input, 'targets[0].table')).toThrowError(
      new RegExp(`^targets\\[0\\]\\.table: .*${message.replace(/[.*"()[\]]/g, '\\$&')}`),
    );
  });

  it('rejects names Postgres would truncate (over 63 bytes)', () => {
    const name = 'x'.repeat(64);
    expect(() => parseQualifiedName(name, 'table')).toThrowError(/64 bytes; Postgres truncates identifiers longer than 63 bytes/);
    expect(parseQualifiedName('x'.repeat(63), 'table').name).toHaveLength(63);
  });
});

describe('quoting', () => {
  it('doubles embedded quotes', () => {
    expect(quoteIdent('we"ird')).toBe('"we""ird"');
    expect(quoteLiteral("it's")).toBe("'it''s'");
  });
});
