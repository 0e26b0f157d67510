import { Migration } from '@mikro-orm/migrations';

/**
 * Blind votes are final (issue 16, case 6): a vote on a blind comparison is
 * the reveal, so a vote cast afterwards would be cast knowing the models.
 *
 * - `votes.cast_blind`: true when the vote was cast while its comparison was
 *   blind and unrevealed (its first vote on a blind comparison). The vote
 *   service refuses to change such a vote; should a change happen anyway
 *   (any UPDATE of outcome or winner), the BEFORE trigger clears the flag,
 *   so the changed vote leaves the blind-only board.
 * - The battle snapshot's `blind` (what `battle_counts.blind`, `vote_tallies`
 *   and the blind-only filters read) is now the vote's `cast_blind`, not the
 *   comparison's `blind`.
 * - Existing votes on blind comparisons are taken as cast blind: a change
 *   was not recorded apart from the first vote, so there is nothing to tell
 *   them apart by.
 */
export class Migration20261207062000_blind_votes_final extends Migration {
  override async up(): Promise<void> {
    this.addSql(`alter table "votes" add column "cast_blind" boolean not null default false;`);
    // Before the new trigger: the old one leaves the snapshots alone (outcome and winner unchanged), whose `blind` already says this.
    this.addSql(`update "votes" v set "cast_blind" = true from "comparison_results" c where c.id = v.comparison_id and c.blind;`);
    this.addSql(`
create or replace function votes_battles_before() returns trigger language plpgsql as $$
begin
  if tg_op = 'UPDATE' and (new.outcome is distinct from old.outcome or new.winner_id is distinct from old.winner_id) then
    -- A changed vote was not cast while blind: the first vote revealed the comparison.
    new.cast_blind := false;
  end if;
  if tg_op = 'INSERT' or new.battles is null or new.outcome is distinct from old.outcome or new.winner_id is distinct from old.winner_id
     or new.cast_blind is distinct from old.cast_blind then
    new.battles := jsonb_set(vote_battles(new.comparison_id, new.outcome::text, new.winner_id), '{blind}', to_jsonb(new.cast_blind));
  end if;
  return new;
end $$;`);
  }

  override async down(): Promise<void> {
    this.addSql(`
create or replace function votes_battles_before() returns trigger language plpgsql as $$
begin
  if tg_op = 'INSERT' or new.battles is null or new.outcome is distinct from old.outcome or new.winner_id is distinct from old.winner_id then
    new.battles := vote_battles(new.comparison_id, new.outcome::text, new.winner_id);
  end if;
  return new;
end $$;`);
    this.addSql(`alter table "votes" drop column "cast_blind";`);
  }
}
