/**
 * What services call after a write that changes what a user sees. The cache
 * implementation bumps the user's generation number (O(1), no key scans).
 */
export interface UserCacheInvalidator {
  invalidateUser(userId: string): Promise<void>;
}
