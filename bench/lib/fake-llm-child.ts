/**
 * The fake LLM providers of the test suite (test/helpers/fake-llm.ts), in
 * their own process for the soak: sends its base URLs to the parent, forgets
 * recorded requests every few seconds (the soak makes thousands), and exits
 * when the parent disconnects. FAKE_LLM_BEHAVIOR='{"<model>": {…FakeBehavior}}' sets behaviours
 * (the write bench: `{"gpt-4o": {"chunks": 1}}`, an answer in one delta, at once).
 */
import { type FakeBehavior, FakeLlmServer } from '../../test/helpers/fake-llm';

FakeLlmServer.start().then(
  (fake) => {
    const behaviors = Object.entries(JSON.parse(process.env.FAKE_LLM_BEHAVIOR || '{}') as Record<string, FakeBehavior>);
    const reset = () => {
      fake.reset();
      for (const [model, behavior] of behaviors) fake.setBehavior(model, behavior);
    };
    reset();
    const timer = setInterval(reset, 5_000);
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
