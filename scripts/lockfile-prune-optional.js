#!/usr/bin/env node
/**
 * The npm registry mirror this project is built from does not carry every
 * platform binary of packages such as @swc/core and unrs-resolver (e.g. no
 * @swc/core-darwin-arm64@1.16.22), so `npm install` cannot record them and
 * `npm ci` then refuses the lockfile ("Missing: … from lock file"). They are
 * optional and for other platforms; this drops, from each lockfile entry,
 * optional dependencies that have no entry of their own. Run it after any
 * `npm install` that changes package-lock.json.
 */
const fs = require('node:fs');
const path = require('node:path');

const file = path.join(__dirname, '..', 'package-lock.json');
const lock = JSON.parse(fs.readFileSync(file, 'utf8'));
let pruned = 0;
for (const [where, entry] of Object.entries(lock.packages)) {
  if (!entry.optionalDependencies) continue;
  const base = where ? `${where}/node_modules/` : 'node_modules/';
  for (const name of Object.keys(entry.optionalDependencies)) {
    const present = [`${base}${name}`, `node_modules/${name}`].some((p) => lock.packages[p]);
    if (!present) {
      delete entry.optionalDependencies[name];
      pruned++;
    }
  }
  if (Object.keys(entry.optionalDependencies).length === 0) delete entry.optionalDependencies;
}
fs.writeFileSync(file, JSON.stringify(lock, null, 2) + '\n');
console.log(`pruned ${pruned} unresolvable optional dependencies from package-lock.json`);
