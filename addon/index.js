// Loads the compiled binding. The shape of the binding is described, by hand, in index.d.ts.
import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);

/** @type {import('./index.d.ts').Binding} */
let binding;
try {
  binding = require('./build/Release/vshm.node');
} catch (err) {
  const e = new Error(
    `@vshm/addon: native binding not built (${err && err.message}); run "npm rebuild @vshm/addon"`,
  );
  e.code = 'VSHM_ERR_ADDON_MISSING';
  throw e;
}

export default binding;
