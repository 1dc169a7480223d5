// ESLint (flat config): the recommended rules, without type information so that it stays fast, and
// the rules that keep the library's shape — no import cycles, and the raw layers reached only
// through the files that own them:
//   lib/binding (the addon's values)  only from BINDING_OK and the tests;
//   lib/control (the ioctl caller)    only from CONTROL_OK.
// Type-only imports (`import type`, `import { type X }`) of either are allowed everywhere.
import js from '@eslint/js';
import { defineConfig } from 'eslint/config';
import { createTypeScriptImportResolver } from 'eslint-import-resolver-typescript';
import importX from 'eslint-plugin-import-x';
import globals from 'globals';
import tseslint from 'typescript-eslint';

/** The files that may import lib/binding's values (besides lib/binding itself and the tests). */
const BINDING_OK = [
  'lib/binding.ts',
  'lib/control.ts',
  'lib/dm.ts',
  'lib/dm-remove.ts',
  'lib/dm-shapes.ts',
  'lib/batch.ts',
  'lib/loop.ts',
  'lib/sys.ts',
];
/** The files that may import lib/control (the CLI's main: --debug switches the ioctl trace on). */
const CONTROL_OK = ['lib/control.ts', 'lib/dm.ts', 'lib/dm-remove.ts', 'lib/batch.ts', 'lib/loop.ts', 'lib/sys.ts', 'lib/cli/main.ts'];
const TESTS = ['test/**/*.{ts,mts,mjs}'];

const SOURCES = ['lib/**/*.ts', 'test/**/*.{ts,mts,mjs}', 'bench/**/*.{ts,mts,mjs}', 'scripts/**/*.{ts,mts,mjs}'];

// A relative import of a module of that name, with or without an extension ('./binding', '../../lib/control.js').
const restricted = (name, allowed) => ({
  regex: `^\\.{1,2}/(.*/)?${name}(\\.[cm]?[jt]s)?$`,
  allowTypeImports: true,
  message: `only ${allowed.join(', ')} may import lib/${name} (type-only imports are fine): go through one of them.`,
});
const bindingRule = restricted('binding', [...BINDING_OK.filter((f) => f !== 'lib/binding.ts'), 'the tests']);
const controlRule = restricted(
  'control',
  CONTROL_OK.filter((f) => f !== 'lib/control.ts'),
);
const only = (...patterns) => ({ '@typescript-eslint/no-restricted-imports': ['error', { patterns }] });
const minus = (a, b) => a.filter((f) => !b.includes(f));

/** The blocks that set no-restricted-imports, less any with no files (flat config refuses `files: []`). */
const imports = [
  { files: SOURCES, ignores: [...BINDING_OK, ...CONTROL_OK, ...TESTS], rules: only(bindingRule, controlRule) },
  { files: [...minus(BINDING_OK, CONTROL_OK), ...TESTS], rules: only(controlRule) },
  { files: minus(CONTROL_OK, BINDING_OK), rules: only(bindingRule) },
].filter((c) => c.files.length > 0);

export default defineConfig(
  { ignores: ['dist/', 'build/', 'build-*/', 'prebuilds/', 'docs/', '.vm/', '.fuzz/', 'node_modules/'] },
  {
    files: SOURCES,
    extends: [js.configs.recommended, tseslint.configs.recommended],
    plugins: { 'import-x': importX },
    languageOptions: { globals: { ...globals.node } },
    settings: {
      // import-x/no-cycle follows only files with these extensions, parsed by this parser.
      'import-x/extensions': ['.ts', '.mts', '.js', '.mjs', '.cjs'],
      'import-x/parsers': { '@typescript-eslint/parser': ['.ts', '.mts'] },
      'import-x/resolver-next': [
        createTypeScriptImportResolver({ project: ['tsconfig.json', 'test/tsconfig.json'], noWarnOnMultipleProjects: true }),
      ],
    },
    linterOptions: { reportUnusedDisableDirectives: 'error' },
    rules: {
      // An import cycle between modules (type-only imports do not count: they vanish at run time).
      'import-x/no-cycle': ['error', { ignoreExternal: true }],
      // `const { release: _release, ...rest } = x` is how the code drops a field.
      '@typescript-eslint/no-unused-vars': ['error', { ignoreRestSiblings: true }],
    },
  },
  // The addon is loaded by a path known only at run time (DEVMAPPER_ADDON): a require() it must be.
  { files: ['lib/binding.ts'], rules: { '@typescript-eslint/no-require-imports': 'off' } },
  // Which files may import lib/binding and lib/control: each file in at most one of these blocks
  // (files in both lists are in none).
  ...imports,
);
