/**
 * node-postgres 8 warns, once per process, when a query is sent to a client that is still running
 * another; pg 9 refuses it. Every file that touches Postgres runs with this: the first such query
 * fails the run instead of printing a line nobody reads (in Lambda, a stray line in the log).
 */
process.on('warning', (warning) => {
  if (warning.name === 'DeprecationWarning' && warning.message.includes('already executing a query')) {
    throw new Error(`a query was queued behind another on one pg client (pg 9 refuses this): ${warning.message}`);
  }
});
