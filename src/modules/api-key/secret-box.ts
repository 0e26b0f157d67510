/**
 * AES-256-GCM for provider API keys at rest. A stored secret is
 * `base64(iv[12] | tag[16] | ciphertext)` plus the id of the key that sealed
 * it. The first configured key seals; any configured key opens, so rotation is:
 * set the new ENCRYPTION_KEY (+ ENCRYPTION_KEY_ID), move the old one to
 * ENCRYPTION_KEYS_PREVIOUS, and (optionally) re-save keys to re-seal them.
 */
import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';
import type { EncryptionKey } from '../../config';

export interface SealedSecret {
  ciphertext: string;
  keyId: string;
}

export class SecretBox {
  constructor(private readonly keys: readonly EncryptionKey[]) {
    if (keys.length === 0) throw new Error('SecretBox needs at least one encryption key');
  }

  seal(plaintext: string, aad: string): SealedSecret {
    const { id, key } = this.keys[0]!;
    const iv = randomBytes(12);
    const cipher = createCipheriv('aes-256-gcm', key, iv);
    cipher.setAAD(Buffer.from(aad));
    const body = Buffer.concat([cipher.update(plaintext, 'utf8'), cipher.final()]);
    return { ciphertext: Buffer.concat([iv, cipher.getAuthTag(), body]).toString('base64'), keyId: id };
  }

  /** `aad` binds the ciphertext to its row (owner id): a secret copied to another row fails to open. */
  open(sealed: SealedSecret, aad: string): string {
    const entry = this.keys.find((k) => k.id === sealed.keyId);
    if (!entry) throw new Error(`No encryption key with id "${sealed.keyId}" is configured`);
    const raw = Buffer.from(sealed.ciphertext, 'base64');
    const decipher = createDecipheriv('aes-256-gcm', entry.key, raw.subarray(0, 12));
    decipher.setAAD(Buffer.from(aad));
    decipher.setAuthTag(raw.subarray(12, 28));
    return Buffer.concat([decipher.update(raw.subarray(28)), decipher.final()]).toString('utf8');
  }
}
