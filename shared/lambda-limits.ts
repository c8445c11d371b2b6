/**
 * Lambda's recursive loop detection stops a chain of requests after 16 invocations: the
 * scheduled one and 15 continuations. Up to this many continuations need no change to it.
 */
export const LAMBDA_RECURSION_LIMIT = 15;

/** The most continuations a chain may have, whatever the configuration: 100 hops of 15 minutes are a day, past any night's backlog. */
export const MAX_CONTINUATIONS_CAP = 100;
