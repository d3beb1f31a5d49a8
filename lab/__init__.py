"""reglab: the private Docker registry tutorial as a lab that boots, provisions and checks itself.

A folder per concern; each may import only from the folders before it, never
from one after it, and no module imports back into one that imports it
(tests/unit/test_layout.py holds both rules).

- `common`: errors and exit codes, files written safely, waiting, progress, clipping.
- `pki`: the lab's CA and server certificates, and checking a served chain.
- `tutorial`: the tutorial's own text, its code blocks, and commands taken from it.
- `model`: what a lab is, as data: the lab file, the scenario and its kinds, causes, results, passwords.
- `reports`: results written for people and tools (Markdown, HTML, JUnit, JSON; the maintainer's report).
- `machines`: where machines come from and how they are reached: providers, remote commands,
  OS families, provisioning, images, boxes, warm starts, the host's own setup.
- `engine`: solving and checking steps on the machines, a lab's state, the session that ties it together.
- `classroom`: a class: roster, networks, students' labs, gradebook, dashboard.
- `portal`: the class portal over TLS: logins, each student's page with checks and hints, the instructor's
  live view, the SSH gateway to the students' machines.
- `cli`: the `reglab` command.

Layers, lowest first: common, pki, tutorial, model, reports, machines, engine, classroom, portal, cli.
"""
