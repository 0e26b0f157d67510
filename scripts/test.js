#!/usr/bin/env node
/**
 * `npm test`: the lint first (a second or two: fail fast), then the type check
 * and the schema check side by side with the suite. The suite's files spend
 * much of their time waiting (PostgreSQL, child processes, sockets), so the
 * checks run in CPU the suite leaves idle instead of before it (on this 2-core
 * machine they took 10-20 s before the suite). The checks' output is printed
 * once the suite ends; the exit code is the first failure's (0 when all pass).
 *
 *   npm test [-- <jest arguments>]      e.g. npm test -- --seed=123 test/http.test.ts
 */
const { spawn, spawnSync } = require('node:child_process');
const { join } = require('node:path');

const ROOT = join(__dirname, '..');
const npm = process.platform === 'win32' ? 'npm.cmd' : 'npm';

const lint = spawnSync(npm, ['run', '--silent', 'lint'], { cwd: ROOT, stdio: 'inherit' });
if (lint.status !== 0) process.exit(lint.status ?? 1);

/** Runs `npm run <script>` with its output kept for later. */
function checkInBackground(script) {
  return new Promise((resolve) => {
    const started = Date.now();
    const child = spawn(npm, ['run', '--silent', script], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    child.stdout.on('data', (chunk) => (output += chunk));
    child.stderr.on('data', (chunk) => (output += chunk));
    child.on('close', (code, signal) =>
      resolve({ script, code: code ?? (signal ? 1 : 0), output, seconds: (Date.now() - started) / 1000 }),
    );
  });
}

const checks = [checkInBackground('typecheck'), checkInBackground('schema:check')];
const jest = spawn(process.execPath, [join(ROOT, 'node_modules', 'jest', 'bin', 'jest.js'), '--randomize', ...process.argv.slice(2)], {
  cwd: ROOT,
  stdio: 'inherit',
});
for (const signal of ['SIGINT', 'SIGTERM']) process.on(signal, () => jest.kill(signal));

jest.on('close', async (jestCode, signal) => {
  const results = await Promise.all(checks);
  let code = jestCode ?? (signal ? 1 : 0);
  for (const result of results) {
    const text = result.output.trim();
    console.log(
      `\nnpm run ${result.script}: ${result.code === 0 ? 'passed' : `FAILED (exit ${result.code})`} in ${result.seconds.toFixed(1)} s${text ? `\n${text}` : ''}`,
    );
    if (result.code !== 0 && code === 0) code = result.code;
  }
  process.exit(code);
});
