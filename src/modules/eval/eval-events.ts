/**
 * Names shared by the eval service, its workers and its subscription: the
 * pg-boss queues, the pub/sub channels and their messages, and the
 * `evalRunEvents` stream.
 *
 * The stream replays the run's state first, then one event per settled cell
 * (published by whichever instance settled it, through the pub/sub port:
 * across instances with Redis), and ends after the event with a terminal
 * status. Pub/sub is at most once and Redis may be down: the stream also
 * re-reads the run every {@link RESYNC_MS} and sends its progress when it
 * moved, so a lost message delays an event, never loses the final one.
 */
import type { PubSub } from '../../pubsub/pubsub.port';
import { EvalRunStatus } from './eval.entity';

export const EVAL_CELL_QUEUE = 'eval-cell';
export const EVAL_JUDGE_QUEUE = 'eval-judge';
/** Cancels, to every instance: `{ cancel: runId }`. */
export const EVAL_CONTROL_CHANNEL = 'eval:control';

export const runChannel = (runId: string) => `eval-run:${runId}`;

export interface CellJob {
  cellId: string;
  runId: string;
  /** The W3C trace context of the request (or the work) that queued it, when tracing is on: its run continues that trace. */
  traceparent?: string;
}

export interface PairJob {
  verdictId: string;
  runId: string;
  /** The W3C trace context of the request (or the work) that queued it, when tracing is on: its run continues that trace. */
  traceparent?: string;
}

export interface EvalControlMessage {
  cancel: string;
}

/** What goes on a run's channel: its state after a cell settled (`cellId`), or after it changed status. */
export interface RunEventMessage {
  runId: string;
  status: EvalRunStatus;
  cellId?: string;
}

export const TERMINAL = new Set<string>([EvalRunStatus.COMPLETED, EvalRunStatus.CANCELLED, EvalRunStatus.FAILED]);

/** How often an open stream re-reads its run (events lost by pub/sub, Redis down). */
export const RESYNC_MS = 2_000;

export interface RunSnapshot<P> {
  status: EvalRunStatus;
  progress: P;
  /** Changes whenever progress does (cells and judge calls done, status). */
  version: string;
}

export interface EvalEventStreamDeps<P, C> {
  pubsub: PubSub;
  runId: string;
  /** The run's state now (one statement). */
  snapshot(): Promise<RunSnapshot<P>>;
  /** The settled cell an event names. */
  cell(cellId: string): Promise<C | null>;
  ready?: () => Promise<void> | void;
}

export interface EvalRunEvent<P, C> {
  runId: string;
  status: EvalRunStatus;
  progress: P;
  cell: C | null;
}

/**
 * The `evalRunEvents` source stream (see the file's comment): subscribed to
 * the run's channel before it resolves, so no settle between the caller's
 * check and the first read is missed.
 */
export async function evalRunEventStream<P, C>(deps: EvalEventStreamDeps<P, C>): Promise<AsyncGenerator<EvalRunEvent<P, C>>> {
  const pending: RunEventMessage[] = [];
  const state: { wake?: () => void } = {};
  const unsubscribe = await deps.pubsub.subscribe<RunEventMessage>(runChannel(deps.runId), (m) => {
    pending.push(m);
    state.wake?.();
  });
  return stream(deps, pending, state, unsubscribe);
}

async function* stream<P, C>(
  deps: EvalEventStreamDeps<P, C>,
  pending: RunEventMessage[],
  state: { wake?: () => void },
  unsubscribe: () => Promise<void>,
): AsyncGenerator<EvalRunEvent<P, C>> {
  const timer = setInterval(() => state.wake?.(), RESYNC_MS);
  try {
    let last = await deps.snapshot();
    yield { runId: deps.runId, status: last.status, progress: last.progress, cell: null };
    // The run ends with the message of whoever ended it (the last settle, or the cancel), which carries the
    // terminal status; a terminal status seen only in the database ends the stream at the next resync.
    let terminalReads = TERMINAL.has(last.status) ? 2 : 0;
    while (terminalReads < 2) {
      if (!pending.length) await new Promise<void>((resolve) => (state.wake = resolve));
      state.wake = undefined;
      await deps.ready?.();
      const batch = pending.splice(0);
      const cells = batch.filter((m) => m.cellId).map((m) => m.cellId!);
      const now = await deps.snapshot();
      for (const cellId of cells) {
        const cell = await deps.cell(cellId);
        yield { runId: deps.runId, status: now.status, progress: now.progress, cell };
      }
      const ended = batch.some((m) => TERMINAL.has(m.status));
      // Without a cell to report (a status change, a resync that found progress): the state alone.
      if ((!cells.length && now.version !== last.version) || (ended && cells.length === 0)) {
        yield { runId: deps.runId, status: now.status, progress: now.progress, cell: null };
      }
      if (ended) terminalReads = 2;
      else if (TERMINAL.has(now.status)) terminalReads++;
      last = now;
    }
  } finally {
    clearInterval(timer);
    await unsubscribe();
  }
}
