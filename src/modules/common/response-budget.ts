/** The response bytes counted so far against `MAX_RESPONSE_BYTES` (`graphql/response-bytes.ts` implements it). */
export interface ResponseBudget {
  /** Counts `bytes` more; throws RESPONSE_TOO_LARGE once the total passes the limit. */
  charge(bytes: number): void;
}
