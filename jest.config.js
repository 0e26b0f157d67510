/** Tests run TypeScript through swc (fast, no type check: `tsc --noEmit` runs first in `npm test`). */
const swcConfig = JSON.parse(require('node:fs').readFileSync(`${__dirname}/.swcrc`, 'utf8'));

/** @type {import('jest').Config} */
module.exports = {
  testEnvironment: 'node',
  roots: ['<rootDir>/test'],
  testMatch: ['**/*.test.ts'],
  transform: { '^.+\\.ts$': ['@swc/jest', { ...swcConfig, swcrc: false }] },
  setupFiles: ['reflect-metadata'],
  globalSetup: '<rootDir>/test/helpers/global-setup.ts',
  globalTeardown: '<rootDir>/test/helpers/global-teardown.ts',
  testTimeout: 60_000,
  // Four workers on this 2-core machine: the files spend much of their time waiting (PostgreSQL, child
  // processes, sockets), so two workers left a core idle; no test depends on timing, so contention slows
  // a run without failing it (issue 17: three green runs with another process keeping a core busy).
  maxWorkers: 4,
};
