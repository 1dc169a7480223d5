import { readFileSync } from 'node:fs';
import { join } from 'node:path';

/** This package's version (lib/ and dist/ both sit one level below package.json). */
export const LIBRARY_VERSION: string = (JSON.parse(readFileSync(join(__dirname, '..', 'package.json'), 'utf8')) as { version: string })
  .version;
