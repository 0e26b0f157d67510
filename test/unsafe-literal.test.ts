/**
 * A document's string literals are checked once per parsed document (a WeakMap verdict, issue 20): the verdict must
 * hold for every later request of that document, safe or not, and variables are still checked on every call.
 */
import { parse } from 'graphql';
import { findUnsafeText } from '../src/input/text-input';

describe('findUnsafeText on a document seen before', () => {
  it('keeps refusing an unsafe literal and accepting a safe one, and checks the variables each time', () => {
    const unsafe = parse('query { search(q: "a\\u0000b") { id } }');
    const safe = parse('query($q: String!) { search(q: $q, hint: "fine") { id } }');
    for (let i = 0; i < 3; i++) {
      expect(findUnsafeText(unsafe, {})).toBe('a string literal');
      expect(findUnsafeText(safe, { q: 'clean' })).toBeNull();
      expect(findUnsafeText(safe, { q: 'x\u0000y' })).toBe('q');
      expect(findUnsafeText(safe, { q: '\ud800' })).toBe('q');
    }
  });
});
