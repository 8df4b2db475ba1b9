/// The stylesheet and the one script, served from `/static/`. The script only follows live updates (Server-Sent
/// Events); every page works without it. It writes agent output with `textContent`, never as markup.
enum Assets {
    static let css = """
        :root { color-scheme: light dark; --fg: #1b1b1b; --bg: #fafafa; --muted: #666; --line: #ddd; --ok: #2e7d32; --bad: #c62828; --accent: #1f5fa8; }
        @media (prefers-color-scheme: dark) { :root { --fg: #e6e6e6; --bg: #161616; --muted: #9a9a9a; --line: #333; --accent: #7fb0ff; } }
        * { box-sizing: border-box; }
        body { margin: 0; font: 14px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; color: var(--fg); background: var(--bg); }
        header { display: flex; gap: 1.5rem; align-items: center; padding: .6rem 1.2rem; border-bottom: 1px solid var(--line); flex-wrap: wrap; }
        .brand { font-weight: 700; color: var(--fg); text-decoration: none; }
        nav a { margin-right: 1rem; color: var(--accent); text-decoration: none; }
        nav a[aria-current] { font-weight: 700; text-decoration: underline; }
        .who { margin-left: auto; color: var(--muted); }
        main { padding: 1rem 1.2rem 3rem; }
        h1 { font-size: 1.4rem; margin: .2rem 0 1rem; }
        h2 { font-size: 1.1rem; margin: 1.6rem 0 .6rem; }
        table { border-collapse: collapse; width: 100%; margin-bottom: .6rem; }
        table.spend { width: auto; min-width: 24rem; }
        table.spend td, table.spend th { padding-right: 2rem; }
        th, td { text-align: left; padding: .35rem .5rem; border-bottom: 1px solid var(--line); vertical-align: top; }
        th { font-weight: 600; color: var(--muted); font-size: .85rem; }
        td.n { text-align: right; font-variant-numeric: tabular-nums; }
        td.id { white-space: nowrap; font-family: ui-monospace, monospace; font-size: .85rem; }
        a { color: var(--accent); }
        .note, .updated, .legend { color: var(--muted); font-size: .85rem; }
        .legend { display: block; }
        .ok { color: var(--ok); } .bad { color: var(--bad); }
        .flash { padding: .5rem .8rem; border: 1px solid var(--line); border-left: 4px solid var(--ok); }
        .status, .state { display: inline-block; padding: 0 .45rem; border-radius: .6rem; font-size: .8rem; border: 1px solid var(--line); }
        .s-succeeded, .c-matches { color: var(--ok); border-color: var(--ok); }
        .s-dead, .s-failed, .c-drifted, .c-unknown { color: var(--bad); border-color: var(--bad); }
        .s-running { color: var(--accent); border-color: var(--accent); }
        .title { color: var(--muted); }
        form.inline { display: inline; }
        .filters { display: flex; gap: .8rem; flex-wrap: wrap; align-items: end; margin-bottom: 1rem; }
        .login { display: grid; gap: .7rem; max-width: 22rem; }
        .login label { display: grid; gap: .2rem; }
        dl.fields { display: grid; grid-template-columns: max-content 1fr; gap: .3rem 1rem; }
        dl.fields dt { color: var(--muted); }
        dl.fields dd { margin: 0; white-space: pre-wrap; overflow-wrap: anywhere; }
        pre.output { background: #111; color: #e6e6e6; padding: .8rem; max-height: 36rem; overflow: auto; white-space: pre-wrap; overflow-wrap: anywhere; }
        svg.chart { display: block; max-width: 100%; height: auto; }
        button { font: inherit; padding: .2rem .7rem; }
        """

    static let js = """
        'use strict';
        // Live overview: the server sends the rendered, escaped fragment.
        const live = document.getElementById('live');
        if (live && live.dataset.live && window.EventSource) {
          const source = new EventSource(live.dataset.live);
          source.addEventListener('overview', (event) => { live.innerHTML = event.data; });
        }
        // Live output of a running job: plain text lines, appended as text.
        const output = document.getElementById('output');
        if (output && output.dataset.stream && window.EventSource) {
          const source = new EventSource(output.dataset.stream);
          const status = document.getElementById('job-status');
          source.addEventListener('line', (event) => {
            const atBottom = output.scrollTop + output.clientHeight >= output.scrollHeight - 4;
            output.appendChild(document.createTextNode(JSON.parse(event.data) + '\\n'));
            if (atBottom) { output.scrollTop = output.scrollHeight; }
          });
          source.addEventListener('status', (event) => {
            const value = JSON.parse(event.data);
            if (status) { status.textContent = value; status.className = 'status s-' + value.replace(/[^a-z]/g, ''); }
          });
          source.addEventListener('end', () => { source.close(); });
        }
        """
}
