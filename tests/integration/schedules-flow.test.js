/**
 * Schedules in real Node-RED runtimes (docs/USER-GUIDE.md "Recurring tasks: schedules"):
 * THREE runtimes on one database each deploy the same flow, which creates the schedule
 * `every-second` (`* * * * * *`) at start-up with an inject node and a `createSchedule`
 * node. All three upkeep loops race for every tick; each tick must become exactly one
 * task.
 *
 * Counting: the tasks are counted by their tick (`runAt`, a whole second) inside a window
 * of N seconds of tick times that starts after all three runtimes run. That count is
 * exactly N. Counting "all the tasks between start and stop" instead would be N ± 1 at
 * each edge: the first tick depends on the moment the schedule was created, and a tick
 * due just before the stop may or may not have been found by an upkeep round (every
 * 0.5 s) when it stops. The window is read only after a tick past its end has fired, and
 * a schedule's ticks fire in order, so every tick of the window has fired by then.
 *
 * The queue `ticks` is paused before the runtimes start, and every runtime also runs a
 * `consume` node on it: while it is paused none of the three claims a task (all stay
 * pending, though each consumer keeps polling); after `resumeQueue` they complete every
 * task, each once.
 */
'use strict';

const test = require('node:test');
const assert = require('node:assert/strict');
const service = require('../../nodes/database-connector/database-service');
const { nodeConfigFor, requireDatabases, spawnNodeRed, pollUntil } = require('../support');

test.before(() => requireDatabases(service));

const SCHEDULE = { name: 'every-second', cron: '* * * * * *', queue: 'ticks', payload: { from: 'flow' } };

/** The flow every runtime deploys: the config node, and the schedule made at start-up. */
function flowsFor(cfg) {
  return [
    { id: 'tab', type: 'tab' },
    cfg.props,
    { id: 'inj', type: 'inject', z: 'tab', props: [{ p: 'payload' }], payload: JSON.stringify(SCHEDULE), payloadType: 'json', once: true, onceDelay: 0.1, repeat: '', topic: '', wires: [['mk']] },
    { id: 'mk', type: 'database-connector', z: 'tab', connection: cfg.props.id, operation: 'createSchedule', wires: [] },
    { id: 'take', type: 'database-connector', z: 'tab', connection: cfg.props.id, operation: 'consume', queue: 'ticks', concurrency: '4', leaseMs: '30000', wires: [['done']] },
    { id: 'done', type: 'function', z: 'tab', outputs: 1, func: "msg.payload = { status: 'completed', result: { by: msg.task.workerId } };\nreturn msg;", wires: [['upd']] },
    { id: 'upd', type: 'database-connector', z: 'tab', connection: cfg.props.id, operation: 'updateTaskStatus', wires: [] },
  ];
}

for (const [provider, seconds] of [['postgres', 30], ['mariadb', 10], ['sqlite', 10]]) {
  test(`${provider}: three runtimes with the same schedule every second enqueue exactly one task per tick (${seconds} s window); their consumers claim none while the queue is paused`, { timeout: 240000 }, async () => {
    const cfg = nodeConfigFor(provider, 'cfg');
    const primary = provider === 'sqlite' ? { provider, sqliteFile: cfg.props.sqliteFile } : { provider, url: cfg.credentials.url };
    const db = await service.open({ primary, tablePrefix: cfg.prefix });
    const reds = [];
    try {
      // paused before any runtime starts, so no consumer can take a tick first
      assert.equal((await db.execute('pauseQueue', { queue: 'ticks' })).value.paused, true);
      for (let n = 0; n < 3; n += 1) {
        reds.push(await spawnNodeRed({ flows: flowsFor(cfg), credentials: { cfg: cfg.credentials } }));
      }
      // each runtime ran its createSchedule (the same schedule, replaced twice: its next
      // tick stays, so no tick is lost to a replacement)
      for (const red of reds) {
        await pollUntil('createSchedule ran in every runtime', async () => (await red.request('GET', '/database-connector/cfg/metrics')).body.operations?.createSchedule?.count || 0, (c) => c === 1, { ms: 30000, every: 100 });
      }
      const { schedules } = (await db.execute('listSchedules', {})).value;
      assert.deepEqual(schedules.map((s) => [s.name, s.cron, s.queue, s.paused]), [['every-second', '* * * * * *', 'ticks', false]]);

      const from = Math.ceil(Date.now() / 1000) * 1000 + 1000;
      const to = from + seconds * 1000; // ticks in [from, to)
      const ticks = async () => (await db.execute('listTasks', { queue: 'ticks', limit: 1000 })).value.tasks;
      const all = await pollUntil('a tick after the window fired', ticks, (ts) => ts.some((t) => Date.parse(t.runAt) > to), { ms: seconds * 1000 + 30000, every: 250 });
      const inWindow = all.filter((t) => Date.parse(t.runAt) >= from && Date.parse(t.runAt) < to);
      assert.equal(inWindow.length, seconds, `${inWindow.length} tasks for ${seconds} ticks`);

      // none twice, none left out, from the first tick to the last
      const times = all.map((t) => Date.parse(t.runAt)).sort((a, b) => a - b);
      for (let k = 1; k < times.length; k += 1) assert.equal(times[k] - times[k - 1], 1000, `ticks ${new Date(times[k - 1]).toISOString()} → ${new Date(times[k]).toISOString()}`);
      for (const t of all) {
        assert.equal(t.name, 'every-second');
        assert.deepEqual(t.payload, { from: 'flow' });
        assert.equal(t.idempotencyKey, `schedule:every-second:${t.runAt}`);
      }
      assert.equal((await db.execute('deleteSchedule', { name: 'every-second' })).value.deleted, true);

      // the paused queue: every runtime's consumer has been polling all along, none took a task
      const claims = async (red) => (await red.request('GET', '/database-connector/cfg/metrics')).body.operations?.claimTasks?.count || 0;
      for (const red of reds) assert.ok((await claims(red)) >= 2, 'each consumer polled while the queue was paused');
      const made = (await ticks()).length;
      let counts = (await db.execute('getQueueStats', { queue: 'ticks' })).value.queues[0].counts;
      assert.deepEqual(counts, { pending: made, running: 0, completed: 0, failed: 0, cancelled: 0 });
      // resumed: the three consumers complete every task, each once
      assert.equal((await db.execute('resumeQueue', { queue: 'ticks' })).value.paused, false);
      counts = await pollUntil('every tick task completed', async () => (await db.execute('getQueueStats', { queue: 'ticks' })).value.queues[0].counts, (c) => c.completed === made, { ms: 60000, every: 200 });
      assert.deepEqual(counts, { pending: 0, running: 0, completed: made, failed: 0, cancelled: 0 });
      for (const t of await ticks()) assert.equal(t.attempts, 1, `task ${t.id} ran ${t.attempts} times`);
    } finally {
      for (const red of reds) await red.stop();
      await db.query(`DROP TABLE IF EXISTS ${cfg.prefix}schedules, ${cfg.prefix}queues, ${cfg.prefix}error_logs, ${cfg.prefix}task_executions, ${cfg.prefix}task_dependencies, ${cfg.prefix}tasks, ${cfg.prefix}workflows, ${cfg.prefix}migrations`).catch(() => {});
      await db.close();
    }
  });
}
