import { randomBytes } from 'node:crypto';
import { SecretBox } from '../src/modules/api-key/secret-box';

const k1 = { id: 'k1', key: randomBytes(32) };
const k2 = { id: 'k2', key: randomBytes(32) };

describe('SecretBox (AES-256-GCM with key ids)', () => {
  it('round-trips, never stores the plaintext, and uses a fresh IV each time', () => {
    const box = new SecretBox([k1]);
    const a = box.seal('sk-live-123456', 'user-1');
    const b = box.seal('sk-live-123456', 'user-1');
    expect(a.keyId).toBe('k1');
    expect(a.ciphertext).not.toContain('sk-live');
    expect(a.ciphertext).not.toBe(b.ciphertext);
    expect(box.open(a, 'user-1')).toBe('sk-live-123456');
  });

  it('keeps old secrets readable after rotation and seals new ones with the new key', () => {
    const old = new SecretBox([k1]).seal('sk-old', 'user-1');
    const rotated = new SecretBox([k2, k1]);
    expect(rotated.open(old, 'user-1')).toBe('sk-old');
    expect(rotated.seal('sk-new', 'user-1').keyId).toBe('k2');
  });

  it('refuses a secret moved to another owner, a tampered ciphertext, or an unknown key id', () => {
    const box = new SecretBox([k1]);
    const sealed = box.seal('sk-x', 'user-1');
    expect(() => box.open(sealed, 'user-2')).toThrow();
    const raw = Buffer.from(sealed.ciphertext, 'base64');
    raw[raw.length - 1]! ^= 1;
    expect(() => box.open({ ...sealed, ciphertext: raw.toString('base64') }, 'user-1')).toThrow();
    expect(() => new SecretBox([k2]).open(sealed, 'user-1')).toThrow(/No encryption key with id "k1"/);
  });
});
