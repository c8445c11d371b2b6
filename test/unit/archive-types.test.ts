import { describe, expect, it } from 'vitest';
import { exactCopyProblem } from '../../functions/archive/catalog';

/** atttypmod as Postgres stores it: VARHDRSZ (4) plus the modifier. */
const numeric = (precision: number, scale: number) => ((precision << 16) | (scale & 0x7ff)) + 4;
const varchar = (length: number) => length + 4;
const column = (builtin: string, typmod: number, typeId = 1) => ({ typeId, typmod, builtin });

describe('an archive column holds every source value exactly', () => {
  it.each([
    ['numeric(10,2) into numeric(12,2)', column('numeric', numeric(10, 2)), column('numeric', numeric(12, 2)), true],
    ['numeric(10,2) into numeric', column('numeric', numeric(10, 2)), column('numeric', -1), true],
    ['numeric into numeric(12,2)', column('numeric', -1), column('numeric', numeric(12, 2)), false],
    ['numeric(10,4) into numeric(12,2)', column('numeric', numeric(10, 4)), column('numeric', numeric(12, 2)), false],
    ['numeric(10,2) into numeric(12,4): pads', column('numeric', numeric(10, 2)), column('numeric', numeric(12, 4)), false],
    ['numeric(12,2) into numeric(11,2)', column('numeric', numeric(12, 2)), column('numeric', numeric(11, 2)), false],
    ['numeric(5,-2) into numeric(6,-2) (negative scale, Postgres 15+)', column('numeric', numeric(5, -2)), column('numeric', numeric(6, -2)), true],
    ['numeric(5,-2) into numeric(5,0)', column('numeric', numeric(5, -2)), column('numeric', numeric(5, 0)), false],
    ['varchar(10) into varchar(20)', column('varchar', varchar(10)), column('varchar', varchar(20)), true],
    ['varchar(20) into varchar(10)', column('varchar', varchar(20)), column('varchar', varchar(10)), false],
    ['varchar into varchar(10)', column('varchar', -1), column('varchar', varchar(10)), false],
    ['timestamptz into timestamptz(6)', column('timestamptz', -1), column('timestamptz', 6), true],
    ['timestamptz into timestamptz(3)', column('timestamptz', -1), column('timestamptz', 3), false],
    ['timestamptz(0) into timestamptz(3)', column('timestamptz', 0), column('timestamptz', 3), true],
    ['char(3) into char(5): pads', column('bpchar', varchar(3)), column('bpchar', varchar(5)), false],
    ['char(3) into bpchar', column('bpchar', varchar(3)), column('bpchar', -1), true],
    ['interval day into interval', column('interval', 0x7fff0000 & (8 << 16)), column('interval', -1), true],
    ['a type of its own with another modifier', column(undefined as never, 12), column(undefined as never, 13), false],
    ['another type altogether', column('int4', -1, 23), column('int8', -1, 20), false],
  ])('%s', (_label, source, destination, exact) => {
    expect(exactCopyProblem(source, destination) === undefined).toBe(exact);
  });
});
