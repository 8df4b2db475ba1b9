import Mustache

/// The pages' Mustache templates. `{{x}}` is HTML-escaped (everything from forges and agents goes through it);
/// `{{{x}}}` is used only for markup this server built itself (a rendered partial, a chart's SVG).
enum Templates {
    static func library() throws -> MustacheLibrary {
        var library = MustacheLibrary()
        for (name, text) in all { try library.register(text, named: name) }
        return library
    }

    static let all: [(String, String)] = [
        ("layout", layout), ("overview", overview), ("overview-live", overviewLive), ("jobs", jobs), ("job", job), ("sessions", sessions),
        ("session", session), ("dead", dead), ("containers", containers), ("login", login), ("error", error),
    ]

    static let layout = """
        <!doctype html>
        <html lang="en">
        <head>
        <meta charset="utf-8">
        <meta name="viewport" content="width=device-width, initial-scale=1">
        <title>{{title}} · forge-hooks</title>
        <link rel="stylesheet" href="{{base}}/static/app.css">
        <script src="{{base}}/static/app.js" defer></script>
        </head>
        <body>
        <header>
        <a class="brand" href="{{base}}/">forge-hooks</a>
        <nav>
        <a href="{{base}}/"{{#navOverview}} aria-current="page"{{/navOverview}}>Overview</a>
        <a href="{{base}}/jobs"{{#navJobs}} aria-current="page"{{/navJobs}}>Jobs</a>
        <a href="{{base}}/sessions"{{#navSessions}} aria-current="page"{{/navSessions}}>Sessions</a>
        <a href="{{base}}/dead"{{#navDead}} aria-current="page"{{/navDead}}>Dead / failed</a>
        <a href="{{base}}/containers"{{#navContainers}} aria-current="page"{{/navContainers}}>Containers</a>
        </nav>
        <div class="who">
        {{#signedIn}}{{user}} <form method="post" action="{{base}}/logout" class="inline"><input type="hidden" name="csrf" value="{{csrf}}"><button>Sign out</button></form>{{/signedIn}}
        {{^signedIn}}{{#actionsEnabled}}<a href="{{base}}/login">Sign in</a> to act{{/actionsEnabled}}{{^actionsEnabled}}read-only{{/actionsEnabled}}{{/signedIn}}
        </div>
        </header>
        <main>
        {{#flash}}<p class="flash" role="status">{{flash}}</p>{{/flash}}
        {{{content}}}
        </main>
        </body>
        </html>
        """

    static let overview = """
        <h1>Overview</h1>
        <div id="live" data-live="{{base}}/overview/live">{{{live}}}</div>
        """

    static let overviewLive = """
        <p class="updated">As of {{updated}}{{#redisDown}} — <span class="bad">Redis did not answer: {{redisDown}}</span>{{/redisDown}}</p>
        <table class="counts">
        <thead><tr><th>Agent</th><th>Queued</th><th>Running</th><th>Waiting</th><th>Delayed</th><th>Dead</th><th>Sessions</th><th title="Jobs whose reaction or status comment is not on the forge yet">Forge feedback</th><th>Finished per minute, last hour</th><th>Per hour, last day</th><th title="What the agent's runs cost (each run's own cost, by UTC day)">Spent today</th><th>7 days</th><th>30 days</th></tr></thead>
        <tbody>
        {{#agents}}<tr>
        <td><a href="{{base}}/jobs?agent={{agentQuery}}">{{agent}}</a></td>
        <td class="n"><a href="{{base}}/jobs?agent={{agentQuery}}&amp;status=queued">{{queued}}</a></td>
        <td class="n"><a href="{{base}}/jobs?agent={{agentQuery}}&amp;status=running">{{running}}</a></td>
        <td class="n"><a href="{{base}}/jobs?agent={{agentQuery}}&amp;status=waiting">{{waiting}}</a></td>
        <td class="n"><a href="{{base}}/dead#delayed">{{delayed}}</a></td>
        <td class="n"><a href="{{base}}/dead">{{dead}}</a></td>
        <td class="n">{{sessions}}</td>
        <td class="n">{{feedback}}</td>
        <td>{{{hourChart}}}<span class="legend">{{hourSucceeded}} ok · {{hourFailed}} failed</span></td>
        <td>{{{dayChart}}}<span class="legend">{{daySucceeded}} ok · {{dayFailed}} failed</span></td>
        <td class="n">{{spendToday}}</td><td class="n">{{spendWeek}}</td><td class="n">{{spendMonth}}</td>
        </tr>{{/agents}}
        {{^agents}}<tr><td colspan="13">No agents are configured or registered by a worker.</td></tr>{{/agents}}
        </tbody>
        </table>
        <p class="note">Totals: {{delayedTotal}} delayed, {{deadTotal}} dead, {{sessionsTotal}} sessions.{{#sampled}} Delayed and dead per agent are counted from the newest 1000 of each.{{/sampled}}</p>
        {{#hasSpendRepos}}<h2>Spend by repository, 30 days</h2>
        <table class="spend">
        <thead><tr><th>Agent</th><th>Repository</th><th>Spent</th></tr></thead>
        <tbody>
        {{#spendRepos}}<tr><td>{{agent}}</td><td>{{repo}}</td><td class="n">{{spent}}</td></tr>{{/spendRepos}}
        </tbody>
        </table>{{/hasSpendRepos}}
        <h2>Workers</h2>
        <table class="workers">
        <thead><tr><th>Worker</th><th>Host</th><th>Slots</th><th>Agents</th><th>Heartbeat</th><th>Lease</th><th>Running</th></tr></thead>
        <tbody>
        {{#workers}}<tr>
        <td>{{workerID}}</td><td>{{host}}</td><td class="n">{{slots}}</td><td>{{agents}}</td><td>{{heartbeatAge}} ago</td>
        <td>{{#alive}}<span class="ok">alive</span> ({{leaseLeft}} left){{/alive}}{{^alive}}<span class="bad">lapsed</span>{{/alive}}</td>
        <td>{{#runs}}{{#jobPath}}<a href="{{base}}/jobs/{{jobPath}}">{{jobID}}</a>{{/jobPath}}{{^jobPath}}{{jobID}}{{/jobPath}} {{jobAgent}} {{jobSubject}}<br>{{/runs}}{{^runs}}idle{{/runs}}</td>
        </tr>{{/workers}}
        {{^workers}}<tr><td colspan="7">No worker is registered.</td></tr>{{/workers}}
        </tbody>
        </table>
        """

    static let jobRows = """
        {{#jobs}}<tr>
        <td class="id">{{#idPath}}<a href="{{base}}/jobs/{{idPath}}">{{id}}</a>{{/idPath}}{{^idPath}}{{id}}{{/idPath}}</td>
        <td><span class="status s-{{status}}">{{status}}</span></td>
        <td>{{agent}}</td>
        <td>{{repo}}#{{number}} <span class="title">{{title}}</span></td>
        <td>{{event}}</td>
        <td class="n">{{attempts}}</td>
        <td>{{created}}</td>
        <td>{{finished}}</td>
        {{#actions}}<td>{{#requeueable}}<form method="post" action="{{base}}/jobs/{{idPath}}/requeue" class="inline"><input type="hidden" name="csrf" value="{{csrf}}"><input type="hidden" name="back" value="{{back}}"><button>Requeue</button></form>{{/requeueable}}</td>{{/actions}}
        </tr>{{/jobs}}
        """

    static let jobs = """
        <h1>Jobs</h1>
        <form method="get" action="{{base}}/jobs" class="filters">
        <label>Status <select name="status"><option value="">any</option>{{#statuses}}<option value="{{name}}"{{#selected}} selected{{/selected}}>{{name}}</option>{{/statuses}}</select></label>
        <label>Agent <input name="agent" value="{{filterAgent}}" size="10"></label>
        <label>Repository <input name="repo" value="{{filterRepo}}" placeholder="owner/name" size="18"></label>
        <label>Session <input name="session" value="{{filterSession}}" placeholder="agent:owner/name:number" size="24"></label>
        <button>Filter</button> <a href="{{base}}/jobs">clear</a>
        </form>
        <table class="jobs">
        <thead><tr><th>Job</th><th>Status</th><th>Agent</th><th>Subject</th><th>Event</th><th>Attempts</th><th>Created</th><th>Finished</th></tr></thead>
        <tbody>
        \(jobRows)
        {{^jobs}}<tr><td colspan="8">No jobs{{#filtered}} match among the {{examined}} looked at{{/filtered}}.</td></tr>{{/jobs}}
        </tbody>
        </table>
        {{#next}}<p><a class="more" href="{{next}}">Older jobs →</a>{{#filtered}} <span class="note">(this page looked at {{examined}} jobs)</span>{{/filtered}}</p>{{/next}}
        """

    static let job = """
        <h1>Job {{id}} <span class="status s-{{status}}" id="job-status">{{status}}</span></h1>
        {{#requeueable}}{{#canAct}}<form method="post" action="{{base}}/jobs/{{id}}/requeue"><input type="hidden" name="csrf" value="{{csrf}}"><input type="hidden" name="back" value="{{back}}"><button>Requeue with fresh attempts</button></form>{{/canAct}}{{/requeueable}}
        <dl class="fields">
        {{#fields}}<dt>{{name}}</dt><dd>{{#link}}<a href="{{link}}" rel="noopener noreferrer nofollow">{{value}}</a>{{/link}}{{^link}}{{#internal}}<a href="{{internal}}">{{value}}</a>{{/internal}}{{^internal}}<span class="value">{{value}}</span>{{/internal}}{{/link}}</dd>
        {{/fields}}
        </dl>
        <h2>Output</h2>
        {{#missed}}<p class="note">{{missed}} earlier lines were trimmed from the stored log.</p>{{/missed}}
        {{#showOutput}}<pre id="output" class="output"{{#stream}} data-stream="{{stream}}"{{/stream}}>{{output}}</pre>{{/showOutput}}
        {{^showOutput}}<p class="note">No output was stored.</p>{{/showOutput}}
        """

    static let sessions = """
        <h1>Sessions</h1>
        <p class="note">{{total}} stored, most recently used first.</p>
        <table>
        <thead><tr><th>Session</th><th>CLI session id</th><th>Last used</th><th>Transcript</th></tr></thead>
        <tbody>
        {{#sessions}}<tr><td><a href="{{base}}/session?key={{keyQuery}}">{{key}}</a></td><td><code>{{sessionID}}</code></td><td>{{lastUsed}}</td><td>{{transcript}}</td></tr>{{/sessions}}
        {{^sessions}}<tr><td colspan="4">No sessions are stored.</td></tr>{{/sessions}}
        </tbody>
        </table>
        {{#next}}<p><a class="more" href="{{next}}">Older sessions →</a></p>{{/next}}
        """

    static let session = """
        <h1>Session {{key}}</h1>
        {{#found}}
        <dl class="fields">
        <dt>CLI session id</dt><dd><code>{{sessionID}}</code></dd>
        <dt>Last used</dt><dd>{{lastUsed}}</dd>
        <dt>Transcript</dt><dd>{{transcript}}</dd>
        </dl>
        {{#canAct}}<form method="post" action="{{base}}/sessions/drop"><input type="hidden" name="csrf" value="{{csrf}}"><input type="hidden" name="key" value="{{key}}"><button>Drop this session</button> <span class="note">the next job starts a new conversation</span></form>{{/canAct}}
        {{/found}}
        {{^found}}<p>No CLI session is stored under this key (never stored, dropped, or idle too long).</p>{{/found}}
        <h2>Jobs of this session</h2>
        <table class="jobs">
        <thead><tr><th>Job</th><th>Status</th><th>Agent</th><th>Subject</th><th>Event</th><th>Attempts</th><th>Created</th><th>Finished</th></tr></thead>
        <tbody>
        \(jobRows)
        {{^jobs}}<tr><td colspan="8">None among the newest {{examined}} jobs.</td></tr>{{/jobs}}
        </tbody>
        </table>
        """

    static let dead = """
        <h1>Dead and failed jobs</h1>
        {{#canAct}}
        <form method="post" action="{{base}}/dead/requeue-all" class="inline"><input type="hidden" name="csrf" value="{{csrf}}"><button>Requeue every dead job</button></form>
        <form method="post" action="{{base}}/purge" class="inline"><input type="hidden" name="csrf" value="{{csrf}}"><label><input type="checkbox" name="dead" value="1"> also dead jobs</label> <button>Purge finished records</button></form>
        {{/canAct}}
        <h2 id="dead-list">Dead ({{deadTotal}})</h2>
        <table class="jobs">
        <thead><tr><th>Job</th><th>Status</th><th>Agent</th><th>Subject</th><th>Event</th><th>Attempts</th><th>Created</th><th>Finished</th>{{#canAct}}<th></th>{{/canAct}}</tr></thead>
        <tbody>
        {{#deadList}}\(jobRows){{/deadList}}
        {{#noDead}}<tr><td colspan="9">No dead jobs.</td></tr>{{/noDead}}
        </tbody>
        </table>
        {{#deadNext}}<p><a class="more" href="{{deadNext}}">More →</a></p>{{/deadNext}}
        <h2 id="delayed">Waiting for a retry ({{delayedTotal}})</h2>
        <table class="jobs">
        <thead><tr><th>Job</th><th>Status</th><th>Agent</th><th>Subject</th><th>Event</th><th>Attempts</th><th>Created</th><th>Retry at</th>{{#canAct}}<th></th>{{/canAct}}</tr></thead>
        <tbody>
        {{#delayedList}}\(jobRows){{/delayedList}}
        {{#noDelayed}}<tr><td colspan="9">No retries are waiting.</td></tr>{{/noDelayed}}
        </tbody>
        </table>
        """

    static let containers = """
        <h1>Containers</h1>
        <p class="note">As each Docker host's workers last saw them (they look every few seconds); the dashboard has no Docker access.</p>
        <table>
        <thead><tr><th>Host</th><th>Agent</th><th>State</th><th>Container</th><th>Differences</th><th>Seen by</th><th>Checked</th></tr></thead>
        <tbody>
        {{#reports}}<tr><td>{{host}}</td><td>{{agent}}</td><td><span class="state c-{{state}}">{{state}}</span>{{#stale}} <span class="bad">stale</span>{{/stale}}</td><td><code>{{containerID}}</code></td><td>{{#differences}}{{.}}<br>{{/differences}}</td><td>{{worker}}</td><td>{{checkedAge}} ago</td></tr>{{/reports}}
        {{^reports}}<tr><td colspan="7">No worker has reported yet.</td></tr>{{/reports}}
        </tbody>
        </table>
        """

    static let login = """
        <h1>Sign in</h1>
        <p class="note">Viewing needs no sign-in; requeue, drop and purge do. Your name is written in the log next to each action.</p>
        {{#failed}}<p class="bad" role="alert">That password is not right.</p>{{/failed}}
        <form method="post" action="{{base}}/login" class="login">
        <label>Your name <input name="user" required pattern="[A-Za-z0-9._@-]{1,64}" value="{{user}}" autocomplete="username"></label>
        <label>Password <input name="password" type="password" required autocomplete="current-password"></label>
        <input type="hidden" name="back" value="{{back}}">
        <button>Sign in</button>
        </form>
        """

    static let error = """
        <h1>{{heading}}</h1>
        <p>{{message}}</p>
        """
}
