/**
 * Comparison categories: each has its own leaderboard (`LeaderboardFilter.category`).
 *
 * A closed set, so boards are not split by spelling: a given category is
 * trimmed, lower-cased, spaces and hyphens become `_`, a few aliases map to
 * their name (`coding` → `code`), and anything else is BAD_USER_INPUT naming
 * the set. Absent, the category is assigned by `categorize`: cheap,
 * deterministic rules on the prompt, the first that matches wins:
 *
 * 1. `code`: a fenced code block, a line that looks like code (ends in `{`,
 *    `}` or `;`, or starts with `def `/`import `/`#include`…), or a
 *    programming word (python, javascript, function, compile, regex, SQL, bug…);
 * 2. `math`: LaTeX (`\frac`, `$…$`), an arithmetic expression (`12 * 7`, `x^2`),
 *    or a math word (equation, integral, derivative, prove, probability…);
 * 3. `creative_writing`: asks for a poem, story, song, lyrics, haiku, sonnet,
 *    limerick, screenplay, fiction, a fairy tale…;
 * 4. `long_prompt`: more than LONG_PROMPT_CHARS characters (about 500 tokens);
 * 5. `other`.
 */
import { badInput } from '../../errors';

export const COMPARISON_CATEGORIES = ['code', 'math', 'creative_writing', 'long_prompt', 'other'] as const;
export type ComparisonCategory = (typeof COMPARISON_CATEGORIES)[number];

/** Above this many characters a prompt no other rule claims is `long_prompt`. */
export const LONG_PROMPT_CHARS = 2_000;

const ALIASES: Record<string, ComparisonCategory> = {
  coding: 'code',
  programming: 'code',
  maths: 'math',
  mathematics: 'math',
  creative: 'creative_writing',
  writing: 'creative_writing',
  long: 'long_prompt',
  longer_query: 'long_prompt',
};

/**
 * The category a client gave, normalised; null when none was given (blank
 * counts as none). Unknown names are BAD_USER_INPUT listing the known ones.
 */
export function parseCategory(raw: string | null | undefined, field = 'category'): ComparisonCategory | null {
  if (raw === null || raw === undefined) return null;
  const name = raw
    .trim()
    .toLowerCase()
    .replace(/[\s-]+/g, '_');
  if (name === '') return null;
  if ((COMPARISON_CATEGORIES as readonly string[]).includes(name)) return name as ComparisonCategory;
  const alias = ALIASES[name];
  if (alias) return alias;
  const shown = raw.length > 40 ? `${raw.slice(0, 40)}…` : raw;
  throw badInput(
    `Unknown category ${JSON.stringify(shown)}: use one of ${COMPARISON_CATEGORIES.join(', ')} (or omit it to have it assigned)`,
    field,
  );
}

const FENCE = /```|~~~/;
const CODE_LINE = new RegExp(
  String.raw`^\s*(def |class |import |from \S+ import |#include|function |const |let |var |public |private |fn |func |package |` +
    String.raw`SELECT |CREATE TABLE )|[{};]\s*$`,
  'im',
);
const CODE_WORDS = new RegExp(
  String.raw`\b(code|coding|program(ming)?|python|javascript|typescript|java|golang|rust|kotlin|swift|c\+\+|c#|php|ruby|bash|` +
    'shell script|sql|regex|regexp|html|css|json|yaml|api|function|method|compile[rs]?|debug(ging)?|bug|stack ?trace|' +
    String.raw`exception|refactor|unit tests?|algorithm|git|docker|kubernetes|npm|pip)\b`,
  'i',
);

const LATEX = /\\(frac|int|sum|sqrt|lim|cdot|times|alpha|beta|theta|pi|infty|begin\{(equation|align))|\$[^$\n]+\$/;
const ARITHMETIC = /\d\s*[-+*/×÷^]\s*\d|\b[a-z]\s*\^\s*\d|\d\s*[a-z]\s*[-+=]\s*\d/i;
const MATH_WORDS = new RegExp(
  String.raw`\b(math|maths|mathematics|equation|equations|integral|derivative|differentiate|integrate|calculus|algebra|geometry|` +
    String.raw`trigonometry|theorem|prove|proof|lemma|probability|statistics|matrix|matrices|eigen\w*|polynomial|prime numbers?|` +
    String.raw`factori[sz]e|arithmetic|solve for|calculate|compute the)\b`,
  'i',
);

const CREATIVE_WORDS = new RegExp(
  String.raw`\b(poem|poems|poetry|poetic|verse|stanza|rhyme|rhyming|haiku|sonnet|limerick|ballad|lyrics|song|story|stories|` +
    'short story|tale|fairy tale|fable|fiction|novel|screenplay|dialogue between|monologue|character|plot|' +
    String.raw`once upon a time|rap)\b`,
  'i',
);

/** The category of a prompt by the rules in the module comment. Pure and deterministic. */
export function categorize(prompt: string): ComparisonCategory {
  if (FENCE.test(prompt) || CODE_LINE.test(prompt) || CODE_WORDS.test(prompt)) return 'code';
  if (LATEX.test(prompt) || ARITHMETIC.test(prompt) || MATH_WORDS.test(prompt)) return 'math';
  if (CREATIVE_WORDS.test(prompt)) return 'creative_writing';
  if ([...prompt].length > LONG_PROMPT_CHARS) return 'long_prompt';
  return 'other';
}
