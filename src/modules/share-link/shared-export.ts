/**
 * A shared snapshot as a file (`exportShared`): rendered from the very
 * `SharedViewData` that `shared(token)` answers, so it holds exactly what the
 * link shows (SHARED_REVEALED applied; no owner, keys or costs) and nothing a
 * second read could add.
 */
import { ExportFormat } from '../conversation/export.service';
import type { SharedViewData } from './share-link.service';

export function renderSharedView(view: SharedViewData, format: ExportFormat): string {
  if (format === ExportFormat.JSON) return `${JSON.stringify(view, null, 2)}\n`;
  const lines: string[] = [`# ${view.title ?? 'Shared comparison'}`, '', `Shared ${view.sharedAt.toISOString()}`, ''];
  for (const m of view.messages) {
    lines.push(`## ${m.role.toLowerCase()}${m.model ? ` (${m.model})` : ''}`, '', m.content, '');
  }
  for (const c of view.comparisons) {
    lines.push(`## Comparison: ${c.prompt}`, '');
    if (c.blind && !c.revealed) lines.push('Blind: models hidden', '');
    for (const r of c.responses) {
      const who = r.model ? ` (${r.model})` : '';
      lines.push(`### ${r.label}${who}${r.kind === 'FUSED' ? ' — fused' : ''}`, '', r.content, '');
    }
  }
  return `${lines.join('\n')}\n`;
}
