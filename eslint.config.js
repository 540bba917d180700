import js from '@eslint/js';
import tseslint from 'typescript-eslint';

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
          paths: [
            {
              name: 'prom-client',
              message:
                "Import prom-client's classes from core/prom-modules.ts (types may come from 'prom-client').",
              allowTypeImports: true,
            },
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
