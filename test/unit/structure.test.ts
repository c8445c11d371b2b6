import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join, relative, resolve, sep } from 'node:path';
import { describe, expect, it } from 'vitest';

/**
 * The structure rule (README, "Layout"): the spine (shared/) imports no job, no infra and no CLI;
 * a job (functions/<job>/) imports no other job and no infra. Only a job's handler.ts may import
 * the registry (functions/registry.ts), which is what wires the jobs together.
 */
const ROOT = resolve(import.meta.dirname, '../..');

function sourceFiles(directory: string): string[] {
  return readdirSync(join(ROOT, directory), { withFileTypes: true, recursive: true })
    .filter((entry) => entry.isFile() && entry.name.endsWith('.ts'))
    .map((entry) => relative(ROOT, join(entry.parentPath, entry.name)).split(sep).join('/'));
}

/** Every relative import and export-from of a file, resolved to a path from the repository root. */
function localImports(file: string): string[] {
  const text = readFileSync(join(ROOT, file), 'utf8');
  const specifiers = [...text.matchAll(/(?:^|\n)\s*(?:import|export)\b[^'"`;]*?from\s+'([^']+)'|import\(\s*'([^']+)'\s*\)/g)].map(
    (m) => m[1] ?? m[2]!,
  );
  return specifiers
    .filter((s) => s.startsWith('.'))
    .map((s) =>
      relative(ROOT, resolve(ROOT, dirname(file), s))
        .split(sep)
        .join('/'),
    );
}

const folderOf = (path: string) => path.split('/').slice(0, 2).join('/');

describe('the structure rule', () => {
  it('the spine imports no job, no infra and no CLI', () => {
    const offending = sourceFiles('shared').flatMap((file) =>
      localImports(file)
        .filter((target) => !target.startsWith('shared/'))
        .map((target) => `${file} imports ${target}`),
    );
    expect(offending).toEqual([]);
  });

  it('a job imports no other job, no infra and no CLI; only its handler imports the registry', () => {
    const offending = sourceFiles('functions').flatMap((file) => {
      if (file === 'functions/registry.ts') return [];
      const own = folderOf(file);
      return localImports(file)
        .filter((target) => {
          if (target.startsWith('shared/') || folderOf(target) === own) return false;
          return !(file.endsWith('/handler.ts') && target === 'functions/registry');
        })
        .map((target) => `${file} imports ${target}`);
    });
    expect(offending).toEqual([]);
  });

  it("README's layout names every source file, and only files that exist", () => {
    const readme = readFileSync(join(ROOT, 'README.md'), 'utf8');
    const layout = /## Layout\n\n```\n([\s\S]*?)```/.exec(readme)![1]!;
    const named = new Set(layout.match(/[\w.-]+\.ts\b/g));
    const files = ['functions', 'shared', 'infra', 'scripts']
      .flatMap(sourceFiles)
      .filter((file) => !file.startsWith('scripts/bench/') && !file.includes('/migrations/'));
    const basenames = new Set(files.map((file) => file.slice(file.lastIndexOf('/') + 1)));
    expect(files.filter((file) => !named.has(file.slice(file.lastIndexOf('/') + 1)))).toEqual([]);
    expect([...named].filter((name) => !basenames.has(name))).toEqual([]);
  });

  it('sees the imports it checks (the check itself works)', () => {
    expect(localImports('functions/archive/job.ts')).toContain('shared/job');
    expect(localImports('functions/registry.ts')).toEqual(
      expect.arrayContaining(['functions/partition/job', 'functions/archive/job', 'functions/rollup/job']),
    );
  });
});
