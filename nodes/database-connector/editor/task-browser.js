/*
 * The task browser: a sidebar tab of the Node-RED editor ("tasks") that lists the tasks of
 * one connection, shows a task with its history and errors, requeues, cancels and
 * deletes tasks, pauses and resumes queues, and draws a workflow as a graph.
 *
 * Loaded by database-connector.html (onpaletteadd) with $.ajax from the admin route
 * GET database-connector/editor/task-browser.js, so the editor's access token goes with
 * the request; it defines window.DatabaseConnectorTaskBrowser = {add, remove}. Its data
 * comes from the routes of task-routes.js (and the queue routes of admin-routes.js);
 * docs/USER-GUIDE.md "The task browser" describes it for users.
 *
 * Polling: one request per refresh (the view on screen: the list, a task or a workflow),
 * every REFRESH_MS, only while the tab is visible and a connection is picked. Nothing is
 * asked of a connection until the user picks it here: browsing opens its pool.
 */
(function () {
    "use strict";

    const TAB_ID = "database-connector-tasks";
    const ACTION = "database-connector:show-tasks-tab";
    const CONFIG_TYPE = "database-connector-config";
    const REFRESH_MS = 5000;
    const STATUSES = ["pending", "running", "completed", "failed", "cancelled"];
    const SVG_NS = "http://www.w3.org/2000/svg";
    const BOX = { w: 118, h: 38, gapX: 14, gapY: 34, pad: 10 };

    /** Translates a key of the package's catalogue (database-connector.tasks.*). */
    function t(key, opts) {
        const def = RED.nodes.getType(CONFIG_TYPE);
        return def && def._ ? def._("database-connector.tasks." + key, opts) : key;
    }

    /** "code: message" of a failed request, for the message line. */
    function describeError(jqXHR, textStatus, errorThrown) {
        const body = jqXHR && jqXHR.responseJSON;
        if (body && body.code) { return body.code + ": " + (body.message || ""); }
        if (jqXHR && jqXHR.status === 401) { return t("denied"); }
        return t("httpError", { status: (jqXHR && jqXHR.status) || textStatus || "", error: errorThrown || textStatus || "" });
    }

    function time(iso) {
        return iso ? new Date(iso).toLocaleString() : "–";
    }

    /** A time in a list: the time of day for today, else the date; the full time on hover. */
    function shortTime(iso) {
        if (!iso) { return "–"; }
        const d = new Date(iso);
        return d.toDateString() === new Date().toDateString() ? d.toLocaleTimeString() : d.toLocaleDateString();
    }

    // what the worker's last heartbeat reported: "40 % · {"step":2}", or "–"
    function progressText(p) {
        if (!p) { return "–"; }
        const parts = [];
        if (p.percent !== undefined) { parts.push(p.percent + " %"); }
        if (p.note !== undefined) { parts.push(JSON.stringify(p.note)); }
        return parts.join(" · ") || "–";
    }

    function shortId(id) {
        return id ? String(id).slice(-8) : "";
    }

    /** A status label: a coloured dot and the status. */
    function statusLabel(status) {
        return $('<span class="dbc-tb-status"></span>').addClass("dbc-tb-status-" + status).attr("data-status", status).text(status);
    }

    /** Pretty JSON, or the cut text of a field the server truncated. */
    function showValue($pre, value, bytes) {
        if (bytes !== undefined) {
            $pre.text(value + " …");
            return $('<div class="dbc-tb-truncated"></div>').text(t("truncated", { shown: kb(new Blob([value]).size), total: kb(bytes) }));
        }
        $pre.text(value === null || value === undefined ? "null" : JSON.stringify(value, null, 2));
        return null;
    }

    /** A size for people: 900 B, 1.5 KB, 64 KB. */
    function kb(bytes) {
        return bytes < 1024 ? bytes + " B" : (bytes / 1024).toFixed(bytes < 10240 ? 1 : 0) + " KB";
    }

    let instance = null;

    /** Builds the tab and its state; returns what remove() needs. */
    function create() {
        const canWrite = RED.user.hasPermission("database-connector.write");
        const state = {
            configId: null,
            view: "list",           // list | task | workflow
            filters: { queue: "", status: "", workflowId: "", name: "" },
            cursors: [null],        // the `after` of each page seen; the last is the page shown
            next: null,
            taskId: null,
            workflowId: null,
            edges: {},              // workflow id -> {taskIds: "a,b", deps: {task id: [ids]}}
            queues: null,           // from GET …/queues; null when that route is missing
            seenQueues: {},         // queues seen in listed tasks (the fallback queue list)
            inflight: 0,            // requests of the view in flight
            seq: 0,                 // the latest request; an older answer is dropped
            timer: null
        };

        const $panel = $('<div id="dbc-tasks-panel" class="dbc-tb" data-refreshing="false" data-view="list"></div>');
        const $header = $('<div class="red-ui-sidebar-header dbc-tb-header"></div>').appendTo($panel);
        const $connection = $('<select id="dbc-tb-connection"></select>').attr("title", t("connection")).appendTo($header);
        $('<button type="button" id="dbc-tb-refresh" class="red-ui-button red-ui-button-small"><i class="fa fa-refresh"></i></button>')
            .attr("title", t("refresh")).on("click", function (e) { e.preventDefault(); loadQueues(); loadSchedules(); refresh(); }).appendTo($header);
        const $body = $('<div class="dbc-tb-body"></div>').appendTo($panel);
        const $message = $('<div class="dbc-tb-message"></div>').appendTo($body);
        const $queues = $('<div class="dbc-tb-queues"></div>').appendTo($body);
        const $schedules = $('<div class="dbc-tb-schedules"></div>').appendTo($body);
        const $view = $('<div class="dbc-tb-view"></div>').appendTo($body);
        const $updated = $('<div class="dbc-tb-updated"></div>').appendTo($body);

        function url(rest) {
            return "database-connector/" + encodeURIComponent(state.configId) + "/" + rest;
        }

        function say(text, kind) {
            $message.attr("class", "dbc-tb-message" + (kind ? " dbc-tb-" + kind : "")).text(text || "");
        }

        // ------------------------------------------------------------ connections

        function configNodes() {
            const nodes = [];
            RED.nodes.eachConfig(function (n) { if (n.type === CONFIG_TYPE) { nodes.push(n); } });
            nodes.sort(function (a, b) { return RED.utils.getNodeLabel(a, a.id).localeCompare(RED.utils.getNodeLabel(b, b.id)); });
            return nodes;
        }

        /** Fills the connection picker; nothing is picked until the user picks. */
        function syncConnections() {
            const nodes = configNodes();
            $connection.empty();
            $("<option></option>").val("").text(t(nodes.length ? "pick" : "none")).appendTo($connection);
            nodes.forEach(function (n) {
                $("<option></option>").val(n.id).text(RED.utils.getNodeLabel(n, n.id)).appendTo($connection);
            });
            if (state.configId && !nodes.some(function (n) { return n.id === state.configId; })) { state.configId = null; }
            $connection.val(state.configId || "");
        }

        $connection.on("change", function () {
            state.configId = $connection.val() || null;
            state.queues = null;
            state.seenQueues = {};
            state.edges = {};
            state.cursors = [null];
            say("");
            show("list");
            loadQueues();
            loadSchedules();
            refresh();
        });

        // ------------------------------------------------------------ queues

        /** GET …/queues (queue, paused, counts); when the route is missing, the queues seen in the list. */
        function loadQueues() {
            if (!state.configId) { $queues.empty(); return; }
            const id = state.configId;
            $.ajax({ url: url("queues"), dataType: "json", cache: false })
                .done(function (body) {
                    if (id !== state.configId) { return; }
                    state.queues = Array.isArray(body) ? body : (body && body.queues) || [];
                    renderQueues();
                })
                .fail(function (jqXHR) {
                    if (id !== state.configId) { return; }
                    state.queues = null;
                    // a 404 without a code: this runtime has no queue routes
                    if (!(jqXHR.status === 404 && !(jqXHR.responseJSON && jqXHR.responseJSON.code))) {
                        say(describeError.apply(null, arguments), "error");
                    }
                    renderQueues();
                });
        }

        function renderQueues() {
            $queues.empty();
            if (!state.configId) { return; }
            const rows = state.queues ? state.queues.slice() : Object.keys(state.seenQueues).sort().map(function (q) { return { queue: q }; });
            if (!rows.length) { return; }
            const $table = $('<table class="dbc-tb-table dbc-tb-queue-table"></table>').appendTo($queues);
            $("<tr></tr>").append($("<th></th>").text(t("queue")))
                .append($("<th></th>").text(state.queues ? t("queueState") : ""))
                .append("<th></th>").appendTo($table);
            rows.forEach(function (q) {
                const paused = q.paused === true;
                const $tr = $('<tr class="dbc-tb-queue"></tr>').attr("data-queue", q.queue).attr("data-paused", state.queues ? String(paused) : "unknown").appendTo($table);
                $('<td><a href="#" class="dbc-tb-queue-name"></a></td>').find("a").text(q.queue)
                    .attr("title", t("filterQueue"))
                    .on("click", function (e) { e.preventDefault(); setFilter("queue", q.queue); })
                    .end().appendTo($tr);
                const $state = $('<td class="dbc-tb-queue-state"></td>').appendTo($tr);
                if (state.queues) {
                    $state.text(paused ? t("paused") : t("active")).toggleClass("dbc-tb-warn", paused);
                    if (q.counts) { $state.attr("title", STATUSES.map(function (s) { return s + " " + (q.counts[s] || 0); }).join(" · ")); }
                }
                const $btn = $('<button type="button" class="red-ui-button red-ui-button-small dbc-tb-pause"></button>')
                    .text(paused ? t("resume") : t("pause"))
                    .attr("data-action", paused ? "resume" : "pause")
                    .prop("disabled", !canWrite)
                    .attr("title", canWrite ? "" : t("readOnly"))
                    .on("click", function (e) { e.preventDefault(); pauseOrResume(q.queue, paused ? "resume" : "pause"); });
                $("<td></td>").append($btn).appendTo($tr);
            });
        }

        function pauseOrResume(queue, action) {
            $.ajax({ url: url("queues/" + encodeURIComponent(queue) + "/" + action), method: "POST", dataType: "json" })
                .done(function () {
                    say(t(action === "pause" ? "pausedDone" : "resumedDone", { queue: queue }), "ok");
                    loadQueues();
                })
                .fail(function () { say(describeError.apply(null, arguments), "error"); });
        }

        // ------------------------------------------------------------ schedules
        // (schedule-routes.js): the list with pause / resume / delete, and a form to create
        // or replace one whose cron field shows the pattern in words and its next runs, as
        // the runtime computes them (POST …/schedules-preview, as the user types)

        /** GET …/schedules; a 404 without a code: this runtime has no schedule routes. */
        function loadSchedules() {
            if (!state.configId) { $schedules.empty(); return; }
            const id = state.configId;
            $.ajax({ url: url("schedules"), dataType: "json", cache: false })
                .done(function (body) { if (id === state.configId) { renderSchedules((body && body.schedules) || []); } })
                .fail(function (jqXHR) {
                    if (id !== state.configId) { return; }
                    if (!(jqXHR.status === 404 && !(jqXHR.responseJSON && jqXHR.responseJSON.code))) { say(describeError.apply(null, arguments), "error"); }
                });
        }

        function renderSchedules(list) {
            $schedules.empty();
            $('<div class="dbc-tb-subtitle"></div>').text(t("schedules")).appendTo($schedules);
            const $table = $('<table class="dbc-tb-table dbc-tb-schedule-table"></table>').appendTo($schedules);
            $("<tr></tr>").append($("<th></th>").text(t("scheduleName"))).append($("<th></th>").text(t("cron")))
                .append($("<th></th>").text(t("nextRun"))).append("<th></th>").appendTo($table);
            list.forEach(function (sc) {
                const $tr = $('<tr class="dbc-tb-schedule"></tr>').attr("data-name", sc.name).attr("data-paused", String(sc.paused)).appendTo($table);
                $("<td></td>").text(sc.name).attr("title", sc.queue + " · " + sc.taskName).appendTo($tr);
                $('<td class="dbc-tb-schedule-cron"></td>').text(sc.cron).attr("title", (sc.description || "") + " (" + sc.timeZone + ")").appendTo($tr);
                $("<td></td>").text(sc.paused ? t("paused") : shortTime(sc.nextRunAt)).attr("title", time(sc.nextRunAt)).toggleClass("dbc-tb-warn", sc.paused).appendTo($tr);
                const $actions = $("<td></td>").appendTo($tr);
                [[sc.paused ? "resume" : "pause", "POST", "/" + (sc.paused ? "resume" : "pause")], ["delete", "DELETE", ""]].forEach(function (a) {
                    $('<button type="button" class="red-ui-button red-ui-button-small dbc-tb-schedule-action"></button>')
                        .text(t(a[0])).attr("data-action", a[0]).prop("disabled", !canWrite).attr("title", canWrite ? "" : t("readOnly"))
                        .on("click", function (e) {
                            e.preventDefault();
                            if (a[0] === "delete" && !window.confirm(t("confirmDeleteSchedule", { name: sc.name }))) { return; }
                            changeSchedule(sc.name, a[1], a[2]);
                        }).appendTo($actions);
                });
            });
            if (!list.length) { $('<tr><td colspan="4" class="dbc-tb-empty"></td></tr>').find("td").text(t("noSchedules")).end().appendTo($table); }
            if (canWrite) { scheduleForm().appendTo($schedules); }
        }

        function changeSchedule(name, method, rest) {
            $.ajax({ url: url("schedules/" + encodeURIComponent(name) + rest), method: method, dataType: "json" })
                .done(function () { say(""); loadSchedules(); })
                .fail(function () { say(describeError.apply(null, arguments), "error"); });
        }

        /** The create / replace form; its cron field previews the pattern as the user types. */
        function scheduleForm() {
            const $form = $('<form class="dbc-tb-schedule-form"></form>');
            const field = function (name, placeholder) {
                return $('<input type="text">').attr("id", "dbc-tb-schedule-" + name).attr("placeholder", placeholder)
                    .attr("title", t("scheduleField." + name)).appendTo($form);
            };
            const $name = field("name", t("scheduleName"));
            const $cron = field("cron", "*/10 * * * * *");
            const $tz = field("tz", "UTC");
            const $queue = field("queue", "default");
            const $preview = $('<div class="dbc-tb-schedule-preview" id="dbc-tb-schedule-preview"></div>').appendTo($form);
            let timer = null;
            let seq = 0;
            function preview() {
                const cron = $cron.val().trim();
                if (!cron) { $preview.empty().attr("data-valid", ""); return; }
                const mine = ++seq;
                $.ajax({ url: url("schedules-preview"), method: "POST", contentType: "application/json", dataType: "json", data: JSON.stringify({ cron: cron, timeZone: $tz.val().trim() }) })
                    .done(function (p) {
                        if (mine !== seq) { return; }
                        $preview.empty().attr("data-valid", "true");
                        $('<div class="dbc-tb-schedule-words"></div>').text(p.description).appendTo($preview);
                        $('<div class="dbc-tb-schedule-next"></div>').text(t("nextRuns", { runs: p.nextRuns.map(time).join(" · ") })).appendTo($preview);
                    })
                    .fail(function (jqXHR) {
                        if (mine !== seq) { return; }
                        const b = jqXHR.responseJSON || {};
                        $preview.empty().attr("data-valid", "false").append($('<div class="dbc-tb-warn"></div>').text(b.message || describeError.apply(null, arguments)));
                    });
            }
            $cron.add($tz).on("input", function () { clearTimeout(timer); timer = setTimeout(preview, 250); });
            $('<button type="submit" class="red-ui-button red-ui-button-small" id="dbc-tb-schedule-save"></button>').text(t("saveSchedule")).appendTo($form);
            $form.on("submit", function (e) {
                e.preventDefault();
                const body = { name: $name.val().trim(), cron: $cron.val().trim() };
                if ($tz.val().trim()) { body.timeZone = $tz.val().trim(); }
                if ($queue.val().trim()) { body.queue = $queue.val().trim(); }
                $.ajax({ url: url("schedules"), method: "POST", contentType: "application/json", dataType: "json", data: JSON.stringify(body) })
                    .done(function (sc) { say(t("scheduleSaved", { name: sc.name }), "ok"); loadSchedules(); })
                    .fail(function () { say(describeError.apply(null, arguments), "error"); });
            });
            return $form;
        }

        // ------------------------------------------------------------ views

        function show(view, id) {
            state.view = view;
            if (view === "task") { state.taskId = id; }
            if (view === "workflow") { state.workflowId = id; }
            $panel.attr("data-view", view);
            $view.empty();
            say("");
        }

        function setFilter(key, value) {
            state.filters[key] = value;
            state.cursors = [null];
            show("list");
            refresh();
        }

        function backButton(label, fn) {
            return $('<button type="button" class="red-ui-button red-ui-button-small dbc-tb-back"><i class="fa fa-chevron-left"></i> </button>')
                .append($("<span></span>").text(label))
                .on("click", function (e) { e.preventDefault(); fn(); });
        }

        function renderFilters() {
            const $f = $('<div class="dbc-tb-filters"></div>');
            const input = function (key, placeholder) {
                return $('<input type="text" class="dbc-tb-filter">').attr("id", "dbc-tb-filter-" + key)
                    .attr("placeholder", placeholder).val(state.filters[key])
                    .on("change", function () { setFilter(key, $(this).val().trim()); });
            };
            const $status = $('<select class="dbc-tb-filter" id="dbc-tb-filter-status"></select>')
                .append($("<option></option>").val("").text(t("anyStatus")));
            STATUSES.forEach(function (s) { $("<option></option>").val(s).text(s).appendTo($status); });
            $status.val(state.filters.status).on("change", function () { setFilter("status", $(this).val()); });
            $f.append(input("queue", t("queue")), $status, input("workflowId", t("workflowId")), input("name", t("name")));
            return $f;
        }

        function renderList(page) {
            $view.empty().append(renderFilters());
            page.tasks.forEach(function (task) { state.seenQueues[task.queue] = true; });
            if (!state.queues) { renderQueues(); }
            const $table = $('<table class="dbc-tb-table dbc-tb-list"></table>').appendTo($view);
            if (!page.tasks.length) {
                $("<tr></tr>").append($('<td class="dbc-tb-none"></td>').text(t("noTasks"))).appendTo($table);
            } else {
                $("<tr></tr>").append($("<th></th>").text(t("status")), $("<th></th>").text(t("name")), $("<th></th>").text(t("queue")), $('<th class="dbc-tb-num"></th>').text(t("attempts")), $("<th></th>").text(t("created"))).appendTo($table);
            }
            page.tasks.forEach(function (task) {
                $('<tr class="dbc-tb-task"></tr>').attr("data-id", task.id).attr("data-status", task.status).attr("title", task.lastError || task.id)
                    .append($("<td></td>").append(statusLabel(task.status)))
                    .append($('<td class="dbc-tb-task-name"></td>').text(task.name || shortId(task.id)))
                    .append($("<td></td>").text(task.queue))
                    .append($('<td class="dbc-tb-num"></td>').text(task.attempts + "/" + task.maxAttempts))
                    .append($('<td class="dbc-tb-time"></td>').text(shortTime(task.createdAt)).attr("title", time(task.createdAt)))
                    .on("click", function () { show("task", task.id); refresh(); })
                    .appendTo($table);
            });
            const $pager = $('<div class="dbc-tb-pager"></div>').appendTo($view);
            $('<button type="button" id="dbc-tb-first" class="red-ui-button red-ui-button-small"></button>').text(t("first"))
                .prop("disabled", state.cursors.length === 1)
                .on("click", function () { state.cursors = [null]; refresh(); }).appendTo($pager);
            $('<span class="dbc-tb-page"></span>').text(t("page", { n: state.cursors.length })).appendTo($pager);
            $('<button type="button" id="dbc-tb-next" class="red-ui-button red-ui-button-small"></button>').text(t("next"))
                .prop("disabled", !page.next)
                .on("click", function () { state.cursors.push(page.next); refresh(); }).appendTo($pager);
        }

        function actionButton(id, label, enabled, fn) {
            return $('<button type="button" class="red-ui-button red-ui-button-small"></button>').attr("id", id).text(label)
                .prop("disabled", !canWrite || !enabled)
                .attr("title", canWrite ? "" : t("readOnly"))
                .on("click", function (e) { e.preventDefault(); fn(); });
        }

        function confirmThen(text, okLabel, fn) {
            const n = RED.notify($("<p></p>").text(text), {
                modal: true,
                fixed: true,
                type: "warning",
                buttons: [
                    { text: t("keep"), click: function () { n.close(); } },
                    { text: okLabel, class: "primary", click: function () { n.close(); fn(); } }
                ]
            });
        }

        /** Runs a write route for the task on screen and shows its outcome. */
        function act(method, rest, done) {
            const id = state.taskId;
            $.ajax({ url: url("tasks/" + encodeURIComponent(id) + rest), method: method, dataType: "json" })
                .done(function (body) { done(body); })
                .fail(function () { say(describeError.apply(null, arguments), "error"); })
                .always(function () { if (state.view === "task" && state.taskId === id) { refresh(); } });
        }

        function kvTable(rows) {
            const $kv = $('<table class="dbc-tb-kv"></table>');
            rows.forEach(function (r) {
                $("<tr></tr>").append($("<th></th>").text(r[0])).append($("<td></td>").append(r[1])).appendTo($kv);
            });
            return $kv;
        }

        function workflowLink(id) {
            return $('<a href="#" class="dbc-tb-workflow-link"></a>').text(shortId(id)).attr("title", id)
                .on("click", function (e) { e.preventDefault(); show("workflow", id); refresh(); });
        }

        function renderTask(task) {
            $view.empty();
            const back = state.workflowId && task.workflowId === state.workflowId
                ? backButton(t("backToWorkflow"), function () { show("workflow", state.workflowId); refresh(); })
                : backButton(t("backToList"), function () { show("list"); refresh(); });
            $('<div class="dbc-tb-bar"></div>').append(back).appendTo($view);
            const $head = $('<div class="dbc-tb-task-head"></div>').attr("data-status", task.status).appendTo($view);
            $('<span class="dbc-tb-title"></span>').text(task.name || task.id).appendTo($head);
            statusLabel(task.status).appendTo($head);

            const $actions = $('<div class="dbc-tb-actions"></div>').appendTo($view);
            actionButton("dbc-tb-requeue", t("requeue"), task.status === "failed", function () {
                act("POST", "/requeue", function (body) { say(t("requeued", { status: body.task.status }), "ok"); });
            }).appendTo($actions);
            actionButton("dbc-tb-cancel", t("cancel"), task.status === "pending" || task.status === "running" || task.status === "failed", function () {
                confirmThen(t("confirmCancel", { name: task.name || task.id }), t("cancel"), function () {
                    act("POST", "/cancel", function (body) { say(t("cancelled", { status: body.task.status }), "ok"); });
                });
            }).appendTo($actions);
            actionButton("dbc-tb-delete", t("delete"), task.status !== "running", function () {
                confirmThen(t("confirmDelete", { name: task.name || task.id }), t("delete"), function () {
                    act("DELETE", "", function () {
                        show("list");
                        say(t("deleted", { id: task.id }), "ok");
                        refresh();
                    });
                });
            }).appendTo($actions);

            const truncated = task.truncated || {};
            kvTable([
                [t("id"), $("<code></code>").text(task.id)],
                [t("queue"), document.createTextNode(task.queue)],
                [t("priority"), document.createTextNode(String(task.priority))],
                [t("attempts"), $('<span class="dbc-tb-attempts"></span>').text(t("attemptsValue", { attempts: task.attempts, max: task.maxAttempts }))],
                [t("runAt"), document.createTextNode(time(task.runAt))],
                [t("worker"), document.createTextNode(task.workerId ? task.workerId + " · " + t("leaseUntil", { time: time(task.leaseExpiresAt) }) : "–")],
                [t("created"), document.createTextNode(time(task.createdAt))],
                [t("started"), document.createTextNode(time(task.startedAt))],
                [t("finished"), document.createTextNode(time(task.finishedAt))],
                [t("workflow"), task.workflowId ? workflowLink(task.workflowId) : document.createTextNode("–")],
                [t("dependsOn"), document.createTextNode((task.dependsOn || []).map(shortId).join(", ") || "–")],
                [t("lastError"), $('<span class="dbc-tb-last-error"></span>').text(task.lastError || "–")],
                [t("taskProgress"), $('<span class="dbc-tb-progress"></span>').text(progressText(task.progress))]
            ]).appendTo($view);

            [["payload", "dbc-tb-payload"], ["result", "dbc-tb-result"]].forEach(function (f) {
                $('<div class="dbc-tb-section"></div>').text(t(f[0])).appendTo($view);
                const $pre = $('<pre class="dbc-tb-json"></pre>').addClass(f[1]).attr("data-truncated", String(truncated[f[0]] !== undefined)).appendTo($view);
                const note = showValue($pre, task[f[0]], truncated[f[0]]);
                if (note) { note.appendTo($view); }
            });

            $('<div class="dbc-tb-section"></div>').text(t("history")).appendTo($view);
            const $history = $('<table class="dbc-tb-table dbc-tb-history"></table>').appendTo($view);
            if (!(task.history || []).length) {
                $("<tr></tr>").append($('<td class="dbc-tb-none"></td>').text(t("noHistory"))).appendTo($history);
            } else {
                $("<tr></tr>").append($("<th>#</th>"), $("<th></th>").text(t("status")), $("<th></th>").text(t("worker")), $("<th></th>").text(t("started")), $('<th class="dbc-tb-num"></th>').text("ms")).appendTo($history);
                task.history.forEach(function (h) {
                    $("<tr></tr>").attr("data-attempt", h.attempt).attr("data-status", h.status)
                        .append($("<td></td>").text(h.attempt), $("<td></td>").append(statusLabel(h.status)), $("<td></td>").text(h.workerId || "–"),
                            $("<td></td>").text(time(h.startedAt)), $('<td class="dbc-tb-num"></td>').text(h.durationMs === null || h.durationMs === undefined ? "–" : h.durationMs))
                        .appendTo($history);
                });
            }

            $('<div class="dbc-tb-section"></div>').text(t("errors")).appendTo($view);
            const $errors = $('<table class="dbc-tb-table dbc-tb-errors"></table>').appendTo($view);
            if (!(task.errors || []).length) {
                $("<tr></tr>").append($('<td class="dbc-tb-none"></td>').text(t("noErrors"))).appendTo($errors);
            } else {
                $("<tr></tr>").append($("<th>#</th>"), $("<th></th>").text(t("code")), $("<th></th>").text(t("message")), $("<th></th>").text(t("at"))).appendTo($errors);
                task.errors.forEach(function (e) {
                    $('<tr class="dbc-tb-error"></tr>').attr("data-code", e.code)
                        .append($("<td></td>").text(e.attempt === null || e.attempt === undefined ? "–" : e.attempt), $('<td class="dbc-tb-error-code"></td>').text(e.code),
                            $('<td class="dbc-tb-error-message"></td>').text(e.message), $("<td></td>").text(time(e.createdAt)))
                        .appendTo($errors);
                });
            }
        }

        /** Layers of a dependency graph: a task sits one layer below its lowest dependency. */
        function layers(tasks, deps) {
            const byId = {};
            tasks.forEach(function (task) { byId[task.id] = task; });
            const level = {};
            const visiting = {};
            function depth(id) {
                if (level[id] !== undefined) { return level[id]; }
                if (visiting[id]) { return 0; } // a cycle cannot be made; do not loop if one is
                visiting[id] = true;
                let d = 0;
                (deps[id] || []).forEach(function (p) { if (byId[p]) { d = Math.max(d, depth(p) + 1); } });
                level[id] = d;
                return d;
            }
            const rows = [];
            tasks.forEach(function (task) {
                const d = depth(task.id);
                (rows[d] = rows[d] || []).push(task);
            });
            return rows.filter(Boolean);
        }

        function svgEl(name, attrs) {
            const el = document.createElementNS(SVG_NS, name);
            Object.keys(attrs || {}).forEach(function (k) { el.setAttribute(k, attrs[k]); });
            return el;
        }

        function renderGraph(tasks, deps) {
            const rows = layers(tasks, deps);
            const widest = rows.reduce(function (m, r) { return Math.max(m, r.length); }, 1);
            const width = BOX.pad * 2 + widest * BOX.w + (widest - 1) * BOX.gapX;
            const height = BOX.pad * 2 + rows.length * BOX.h + (rows.length - 1) * BOX.gapY;
            const svg = svgEl("svg", { "class": "dbc-tb-graph", width: width, height: height, viewBox: "0 0 " + width + " " + height });
            const defs = svgEl("defs");
            const marker = svgEl("marker", { id: "dbc-tb-arrow", viewBox: "0 0 8 8", refX: "8", refY: "4", markerWidth: "7", markerHeight: "7", orient: "auto" });
            marker.appendChild(svgEl("path", { d: "M0,0 L8,4 L0,8 z", "class": "dbc-tb-arrowhead" }));
            defs.appendChild(marker);
            svg.appendChild(defs);
            const at = {};
            rows.forEach(function (row, r) {
                const offset = (width - (row.length * BOX.w + (row.length - 1) * BOX.gapX)) / 2;
                row.forEach(function (task, i) {
                    at[task.id] = { x: offset + i * (BOX.w + BOX.gapX), y: BOX.pad + r * (BOX.h + BOX.gapY) };
                });
            });
            tasks.forEach(function (task) {
                (deps[task.id] || []).forEach(function (p) {
                    if (!at[p]) { return; }
                    const a = at[p];
                    const b = at[task.id];
                    const x1 = a.x + BOX.w / 2;
                    const y1 = a.y + BOX.h;
                    const x2 = b.x + BOX.w / 2;
                    const y2 = b.y;
                    svg.appendChild(svgEl("path", {
                        "class": "dbc-tb-edge", "data-from": p, "data-to": task.id, "marker-end": "url(#dbc-tb-arrow)",
                        d: "M" + x1 + "," + y1 + " C" + x1 + "," + (y1 + BOX.gapY / 2) + " " + x2 + "," + (y2 - BOX.gapY / 2) + " " + x2 + "," + y2
                    }));
                });
            });
            tasks.forEach(function (task) {
                const p = at[task.id];
                const g = svgEl("g", { "class": "dbc-tb-node dbc-tb-node-" + task.status, "data-id": task.id, "data-status": task.status, transform: "translate(" + p.x + "," + p.y + ")" });
                const title = svgEl("title");
                title.textContent = (task.name || task.id) + " · " + task.status + (task.lastError ? " · " + task.lastError : "");
                g.appendChild(title);
                g.appendChild(svgEl("rect", { width: BOX.w, height: BOX.h, rx: 4, ry: 4 }));
                const name = svgEl("text", { x: 6, y: 15, "class": "dbc-tb-node-name" });
                const label = task.name || shortId(task.id);
                name.textContent = label.length > 17 ? label.slice(0, 16) + "…" : label;
                g.appendChild(name);
                const sub = svgEl("text", { x: 6, y: 30, "class": "dbc-tb-node-status" });
                sub.textContent = task.status + " · " + task.attempts + "/" + task.maxAttempts;
                g.appendChild(sub);
                g.addEventListener("click", function () { show("task", task.id); refresh(); });
                svg.appendChild(g);
            });
            return svg;
        }

        function renderWorkflow(body) {
            $view.empty();
            $('<div class="dbc-tb-bar"></div>').append(backButton(t("backToList"), function () { state.workflowId = null; show("list"); refresh(); })).appendTo($view);
            const w = body.workflow;
            const $head = $('<div class="dbc-tb-task-head"></div>').attr("data-status", w.status).appendTo($view);
            $('<span class="dbc-tb-title"></span>').text(w.name || w.workflowId).appendTo($head);
            statusLabel(w.status).appendTo($head);
            const $progress = $('<div class="dbc-tb-progress"></div>').attr("data-percent", w.percent).attr("title", t("progressTitle", w)).appendTo($view);
            $('<div class="dbc-tb-progress-bar"></div>').css("width", Math.max(0, Math.min(100, Number(w.percent) || 0)) + "%").appendTo($progress);
            $('<span class="dbc-tb-progress-text"></span>').text(t("progress", w)).appendTo($progress);
            const edges = state.edges[w.workflowId];
            const $graph = $('<div class="dbc-tb-graph-box"></div>').appendTo($view);
            $graph.append(renderGraph(body.tasks, edges ? edges.deps : {}));
            if (body.more) { $('<div class="form-tips"></div>').text(t("graphMore", { count: body.tasks.length })).appendTo($view); }
        }

        // ------------------------------------------------------------ refresh

        /** The one request of this refresh: the view on screen. */
        function request() {
            if (state.view === "task") {
                return { url: url("tasks/" + encodeURIComponent(state.taskId)), render: renderTask };
            }
            if (state.view === "workflow") {
                const id = state.workflowId;
                const known = state.edges[id];
                // dependencies do not change: read them once, then poll states and progress
                return {
                    url: url("workflows/" + encodeURIComponent(id) + (known ? "?deps=0" : "")),
                    render: function (body) {
                        const ids = body.tasks.map(function (x) { return x.id; }).join(",");
                        if (body.tasks.every(function (x) { return x.dependsOn !== undefined; })) {
                            const deps = {};
                            body.tasks.forEach(function (x) { deps[x.id] = x.dependsOn; });
                            state.edges[id] = { taskIds: ids, deps: deps };
                        } else if (known && known.taskIds !== ids) {
                            delete state.edges[id]; // a task came or went: read the dependencies again
                        }
                        renderWorkflow(body);
                    }
                };
            }
            const q = {};
            Object.keys(state.filters).forEach(function (k) { if (state.filters[k]) { q[k] = state.filters[k]; } });
            const cursor = state.cursors[state.cursors.length - 1];
            if (cursor) { q.cursor = cursor; }
            return { url: url("tasks?" + $.param(q)), render: renderList };
        }

        /**
         * Asks for the view on screen and shows it. A poll (`poll`) is skipped while an
         * answer is awaited; anything the user does asks at once, and an older answer that
         * arrives later is dropped.
         */
        function refresh(poll) {
            syncConnections();
            if (!state.configId) {
                $queues.empty();
                $view.empty();
                say(t(configNodes().length ? "pickHint" : "none"), "");
                return;
            }
            if (poll === true && state.inflight) { return; }
            const r = request();
            const seq = ++state.seq;
            state.inflight++;
            $.ajax({ url: r.url, dataType: "json", cache: false })
                .done(function (body) {
                    if (seq !== state.seq) { return; }
                    if ($message.hasClass("dbc-tb-error")) { say(""); }
                    r.render(body);
                    $updated.text(t("updated", { time: new Date().toLocaleTimeString() }));
                })
                .fail(function (jqXHR) {
                    if (seq !== state.seq) { return; }
                    if (jqXHR.status === 404 && jqXHR.responseJSON && /deployed/.test(jqXHR.responseJSON.message || "")) {
                        say(t("notDeployed"), "error");
                    } else {
                        say(describeError.apply(null, arguments), "error");
                    }
                })
                .always(function () { state.inflight--; });
        }

        function isVisible() {
            return $panel.is(":visible") && !document.hidden;
        }
        function stop() {
            if (state.timer) { clearInterval(state.timer); state.timer = null; }
            $panel.attr("data-refreshing", "false");
        }
        /** Polls while the tab is visible, stops when it is hidden. */
        function sync() {
            if (isVisible()) {
                if (!state.timer) {
                    state.timer = setInterval(function () { if (isVisible()) { refresh(true); } else { stop(); } }, REFRESH_MS);
                    $panel.attr("data-refreshing", "true");
                    refresh();
                }
            } else {
                stop();
            }
        }

        RED.actions.add(ACTION, function () { RED.sidebar.show(TAB_ID); });
        RED.sidebar.addTab({
            id: TAB_ID,
            action: ACTION,
            label: t("label"),
            name: t("title"),
            iconClass: "fa fa-tasks",
            content: $panel,
            enableOnEdit: true,
            onchange: function () { setTimeout(sync, 0); },
            onremove: stop
        });
        const onDeploy = function () { if (state.timer) { loadQueues(); loadSchedules(); refresh(); } };
        RED.events.on("sidebar:resize", sync);
        RED.events.on("deploy", onDeploy);
        document.addEventListener("visibilitychange", sync);
        $.ajax({ url: "database-connector/editor/task-browser.css", dataType: "text" })
            .done(function (css) { $('<style id="dbc-tb-style"></style>').text(css).appendTo("head"); });

        return function remove() {
            stop();
            RED.events.off("sidebar:resize", sync);
            RED.events.off("deploy", onDeploy);
            document.removeEventListener("visibilitychange", sync);
            RED.sidebar.removeTab(TAB_ID);
            RED.actions.remove(ACTION);
            $panel.remove();
            $("style#dbc-tb-style").remove();
        };
    }

    window.DatabaseConnectorTaskBrowser = {
        /** Adds the tab (once). */
        add: function () {
            if (!instance && RED.sidebar && RED.sidebar.addTab) { instance = create(); }
        },
        /** Takes the tab, its action and its timer away. */
        remove: function () {
            if (instance) { instance(); instance = null; }
        }
    };
})();
