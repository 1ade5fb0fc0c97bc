/**
 * ESLint 9 flat config: the recommended rules plus a few that catch real mistakes,
 * over the JavaScript we write (the generated native/index.js is napi's, not ours).
 */
'use strict';

const js = require('@eslint/js');
const globals = require('globals');

module.exports = [
  { ignores: ['native/**', 'target/**', 'coverage/**', 'node_modules/**', 'tests/.tmp/**', '.node-red/**'] },
  js.configs.recommended,
  {
    files: ['**/*.js'],
    languageOptions: { ecmaVersion: 2022, sourceType: 'commonjs', globals: { ...globals.node } },
    rules: {
      strict: ['error', 'global'],
      eqeqeq: ['error', 'always', { null: 'ignore' }],
      'no-var': 'error',
      'prefer-const': 'error',
      'no-unused-vars': ['error', { args: 'after-used', argsIgnorePattern: '^_', caughtErrors: 'none' }],
      'no-return-await': 'error',
      'no-throw-literal': 'error',
    },
  },
  {
    // the editor's client code, loaded as a classic script into the editor's page
    files: ['nodes/database-connector/editor/*.js'],
    languageOptions: { sourceType: 'script', globals: { ...globals.browser, RED: 'readonly', $: 'readonly' } },
    rules: { strict: ['error', 'function'] },
  },
  {
    // code that page.evaluate() runs inside the editor's page
    files: ['tests/integration/browser.test.js', 'tests/integration/config-dialog.test.js', 'tests/integration/task-browser.test.js', 'tests/integration/schedules-browser.test.js', 'tests/integration/dashboard.test.js', 'tests/support/browser.js'],
    languageOptions: { globals: { ...globals.browser, RED: 'readonly', $: 'readonly' } },
  },
];
