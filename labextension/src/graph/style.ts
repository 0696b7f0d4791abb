/** The editor's styles, injected once per page by the editor itself, so that the lab
 * document and the notebook widget look the same. JupyterLab's theme variables where
 * they exist (Lab and Notebook 7, light and dark), fallbacks elsewhere. */
export const EDITOR_CSS = `
.gp-graph { display: flex; flex-direction: column; height: 100%; min-height: 420px;
  font-family: var(--jp-ui-font-family, system-ui, sans-serif); font-size: 12px;
  color: var(--jp-ui-font-color1, #222); background: var(--jp-layout-color1, #fff);
  outline: none; box-sizing: border-box; }
.gp-graph * { box-sizing: border-box; }
.gp-graph-toolbar { display: flex; gap: 4px; align-items: center; padding: 4px 6px;
  border-bottom: 1px solid var(--jp-border-color2, #ddd); flex-wrap: wrap; }
.gp-graph-btn, .gp-graph-template { font: inherit; padding: 2px 8px; min-height: 24px;
  border: 1px solid var(--jp-border-color1, #bbb); border-radius: 3px; cursor: pointer;
  background: var(--jp-layout-color2, #f4f4f4); color: inherit; }
.gp-graph-btn:disabled { opacity: .45; cursor: default; }
.gp-graph-btn.gp-danger { color: var(--jp-error-color1, #c62828); margin-top: 8px; }
.gp-graph-summary { margin-left: auto; color: var(--jp-ui-font-color2, #555); }
.gp-graph-summary.gp-bad, .gp-graph-status.gp-bad { color: var(--jp-error-color1, #c62828); }
.gp-graph-banner { padding: 4px 8px; background: var(--jp-warn-color3, #fff3cd);
  color: var(--jp-warn-color0, #6d4c00); border-bottom: 1px solid var(--jp-border-color2, #ddd); }
.gp-graph-body { display: flex; flex: 1; min-height: 0; }
.gp-graph-palette { width: 148px; overflow-y: auto; padding: 4px;
  border-right: 1px solid var(--jp-border-color2, #ddd); }
.gp-graph-palette-cat { margin: 8px 2px 2px; font-size: 10px; text-transform: uppercase;
  letter-spacing: .05em; color: var(--jp-ui-font-color2, #666); }
.gp-graph-palette-item { padding: 3px 6px; margin: 1px 0; border-radius: 3px; cursor: grab;
  border: 1px solid var(--jp-border-color2, #ddd); background: var(--jp-layout-color2, #f7f7f7); }
.gp-graph-palette-item:hover { border-color: var(--jp-brand-color1, #1976d2); }
.gp-readonly .gp-graph-palette { opacity: .5; pointer-events: none; }
.gp-graph-canvas { flex: 1; position: relative; min-width: 0; overflow: hidden;
  background-color: var(--jp-layout-color0, #fafafa);
  background-image: radial-gradient(var(--jp-border-color2, #ddd) 1px, transparent 1px);
  background-size: 16px 16px; }
.gp-graph-svg { width: 100%; height: 100%; display: block; touch-action: none; user-select: none; }
.gp-node { cursor: move; }
.gp-readonly .gp-node { cursor: pointer; }
.gp-node-box { fill: var(--jp-layout-color1, #fff); stroke: var(--jp-border-color1, #999); stroke-width: 1.2; }
.gp-cat-io .gp-node-box { fill: var(--jp-layout-color2, #eef3f8); }
.gp-node.gp-selected .gp-node-box { stroke: var(--jp-brand-color1, #1976d2); stroke-width: 2.5; }
.gp-node.gp-error .gp-node-box { stroke: var(--jp-error-color1, #c62828); stroke-width: 2; }
.gp-node-title { font-weight: 600; fill: var(--jp-ui-font-color1, #222); }
.gp-node-type { fill: var(--jp-ui-font-color2, #666); font-size: 11px; }
.gp-node-shape { fill: var(--jp-ui-font-color2, #444); font-family: var(--jp-code-font-family, monospace); font-size: 11px; }
.gp-node-error { fill: var(--jp-error-color1, #c62828); font-size: 11px; }
.gp-port-in, .gp-port-out { fill: var(--jp-layout-color1, #fff); stroke: var(--jp-brand-color1, #1976d2); stroke-width: 1.5; }
.gp-port-out { cursor: crosshair; }
.gp-port-in:hover, .gp-port-out:hover { fill: var(--jp-brand-color1, #1976d2); }
.gp-edge { fill: none; stroke: var(--jp-ui-font-color2, #777); stroke-width: 1.6; pointer-events: none; }
.gp-edge-hit { fill: none; stroke: transparent; stroke-width: 12; cursor: pointer; }
.gp-edge-group.gp-selected .gp-edge { stroke: var(--jp-brand-color1, #1976d2); stroke-width: 2.5; }
.gp-arrow { fill: var(--jp-ui-font-color2, #777); }
.gp-edge-label { font-family: var(--jp-code-font-family, monospace); font-size: 10px; text-anchor: middle;
  fill: var(--jp-ui-font-color2, #555); paint-order: stroke; stroke: var(--jp-layout-color0, #fafafa); stroke-width: 3px; }
.gp-draft { fill: none; stroke: var(--jp-brand-color1, #1976d2); stroke-width: 2; stroke-dasharray: 5 4; pointer-events: none; }
.gp-graph-inspector { width: 250px; overflow-y: auto; padding: 8px;
  border-left: 1px solid var(--jp-border-color2, #ddd); }
.gp-graph-inspector h3 { margin: 0 0 6px; font-size: 13px; }
.gp-inspector-head { display: flex; gap: 6px; align-items: center; margin-bottom: 6px; }
.gp-node-name { flex: 1; min-width: 0; font: inherit; font-weight: 600; padding: 2px 4px;
  border: 1px solid var(--jp-border-color1, #bbb); background: var(--jp-layout-color1, #fff); color: inherit; }
.gp-node-type-tag { color: var(--jp-ui-font-color2, #666); }
.gp-hint { color: var(--jp-ui-font-color2, #666); margin: 4px 0 8px; }
.gp-node-error-text { color: var(--jp-error-color1, #c62828); margin: 4px 0 8px; }
.gp-node-facts { font-family: var(--jp-code-font-family, monospace); margin: 4px 0 8px; }
.gp-param { display: flex; align-items: center; justify-content: space-between; gap: 6px; margin: 3px 0; }
.gp-param-name { font-family: var(--jp-code-font-family, monospace); }
.gp-param input[type=number], .gp-param input[type=text], .gp-param select { width: 110px; font: inherit;
  padding: 1px 4px; border: 1px solid var(--jp-border-color1, #bbb); background: var(--jp-layout-color1, #fff); color: inherit; }
.gp-error-list { padding-left: 16px; color: var(--jp-error-color1, #c62828); }
.gp-error-list li { cursor: pointer; margin: 2px 0; }
.gp-graph-status { min-height: 18px; padding: 2px 8px; border-top: 1px solid var(--jp-border-color2, #ddd);
  color: var(--jp-ui-font-color2, #555); }
.gp-graph-problems { padding: 16px; color: var(--jp-ui-font-color1, #222); }
.gp-graph-problems h3 { color: var(--jp-error-color1, #c62828); }
.gp-graph-problems li { font-family: var(--jp-code-font-family, monospace); margin: 2px 0; }
`;
