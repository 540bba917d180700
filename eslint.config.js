import js from '@eslint/js';
import tseslint from 'typescript-eslint';

const PROM_CLIENT_IMPORT = {
  name: 'prom-client',
  message: "Import prom-client's classes from core/prom-modules.ts (types may come from 'prom-client').",
  allowTypeImports: true,
};

export default tseslint.config(
  { ignores: ['dist/', 'node_modules/', 'coverage/', '.meshfed/'] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    rules: {
      '@typescript-eslint/no-explicit-any': 'error',
      '@typescript-eslint/no-non-null-assertion': 'error',
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_' }],
      'no-restricted-syntax': [
        'error',
        { selector: 'ExportDefaultDeclaration', message: 'Named exports only (STYLE.md).' },
        {
          selector: "CallExpression[callee.object.name=/^(describe|it|test)$/][callee.property.name='only']",
          message: '.only in tests is an error (STYLE.md).',
        },
      ],
    },
  },
  {
    // prom-client's index loads @opentelemetry/api and more (~7.5 MiB per process): core/prom-modules.ts.
    files: ['**/*.ts'],
    ignores: ['core/prom-modules.ts'],
    rules: {
      '@typescript-eslint/no-restricted-imports': [
        'error',
        {
          paths: [PROM_CLIENT_IMPORT],
        },
      ],
    },
  },
  {
    // The sidecar and what it imports read time without loading more of Node than they must: Date's string
    // methods initialise ICU's time zones (~1 MiB per process, core/utc-format.ts) and the global
    // `performance` loads node:perf_hooks (0.55 MiB, core/clock.ts).
    files: ['proxy/**/*.ts', 'core/**/*.ts', 'cli/**/*.ts'],
    ignores: ['**/*.test.ts'],
    rules: {
      'no-restricted-properties': [
        'error',
        { property: 'toISOString', message: 'Use formatIsoTime from core/utc-format.ts.' },
        { property: 'toUTCString', message: 'Use formatHttpDate from core/utc-format.ts.' },
        // Local time asks ICU for the time zone too; the UTC getters do not.
        ...[
          'getFullYear',
          'getMonth',
          'getDate',
          'getDay',
          'getHours',
          'getMinutes',
          'getSeconds',
          'getMilliseconds',
          'getTimezoneOffset',
          'toDateString',
          'toTimeString',
          'toLocaleString',
          'toLocaleDateString',
          'toLocaleTimeString',
        ].map((property) => ({ property, message: 'Local time initialises ICU time zones: use UTC.' })),
        { object: 'globalThis', property: 'performance', message: 'Use monotonicMs from core/clock.ts.' },
      ],
      'no-restricted-globals': [
        'error',
        { name: 'performance', message: 'Use monotonicMs from core/clock.ts.' },
      ],
    },
  },
  {
    // Loading either costs every sidecar memory (core/clock.ts, core/process-metrics.ts).
    files: ['proxy/**/*.ts', 'core/**/*.ts', 'cli/**/*.ts'],
    ignores: ['**/*.test.ts', 'core/prom-modules.ts'],
    rules: {
      '@typescript-eslint/no-restricted-imports': [
        'error',
        {
          paths: [
            PROM_CLIENT_IMPORT,
            ...['node:perf_hooks', 'perf_hooks', 'node:v8', 'v8'].map((name) => ({
              name,
              message: `${name} costs a sidecar memory to load (docs/performance.md, session 13).`,
            })),
          ],
        },
      ],
    },
  },
  {
    files: ['*.config.js'],
    rules: { 'no-restricted-syntax': 'off' },
  },
);
