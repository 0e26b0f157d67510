/**
 * The fake LLM providers of the test suite (test/helpers/fake-llm.ts), in
 * their own process for the soak: sends its base URLs to the parent, forgets
 * recorded requests every few seconds (the soak makes thousands), and exits
 * when the parent disconnects.
 */
import { FakeLlmServer } from '../../test/helpers/fake-llm';

FakeLlmServer.start().then(
  (fake) => {
    const timer = setInterval(() => fake.reset(), 5_000);
    process.send!({ baseUrls: fake.baseUrls });
    process.on('disconnect', () => {
      clearInterval(timer);
      void fake.close().finally(() => process.exit(0));
    });
  },
  (error: unknown) => {
    console.error(error);
    process.exit(1);
  },
);
