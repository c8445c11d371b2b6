// Loaded with `node --import`: any import of the AWS SDK fails loudly, so a command that passes
// under it provably never loaded the SDK (on any Node version, warning or not).
import { register } from 'node:module';

const hooks = `export async function resolve(specifier, context, next) {
  if (specifier.startsWith('@aws-sdk/')) throw new Error('the AWS SDK was loaded: ' + specifier);
  return next(specifier, context);
}`;
register(`data:text/javascript,${encodeURIComponent(hooks)}`);
