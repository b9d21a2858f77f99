"""Local tooling: everything that runs on a developer's machine and never in production.

Production code (``shared/``, ``functions/``) never imports this package, and
``hubspot-sync package`` stages only ``shared/``, so editing anything here redeploys no
function.

- ``emulator/``: the HubSpot emulator (CRM v3 over real HTTP, rate limits, faults,
  signed webhooks);
- ``stack``: starts the parts (database, emulator, the five functions over real HTTP,
  the task stand-in);
- ``seed``: writes a realistic book of customers into both sides;
- ``story``: the demo's scripted scenes through the real functions;
- ``checks``: compares every mapped field of every linked customer;
- ``drain``: what work is still pending, and waiting until none is;
- ``cli/``: the ``demo``, ``serve`` and ``emulator`` commands.
"""
