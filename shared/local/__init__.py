"""The whole system on one machine: ``hubspot-sync demo`` and ``hubspot-sync serve``.

``stack`` starts the parts (database, HubSpot emulator, the five functions over real
HTTP, the task stand-in), ``seed`` writes a realistic book of customers into both
sides, ``story`` drives every flow through the real functions, and ``checks``
compares every mapped field of every linked customer at the end.
"""
