"""deliverck's benchmarks (`make bench`): not shipped, never imported by deliverck.

They run deliverck's engine in its lab with latency added to every DNS answer
and print ratios to the critical path, rates and peak memory.  The bench's own
zones (bench/zones/) and block lists (bench/dnsbl-lists.toml) reach the lab
the way any user's do: `--zone-dir` (lab.run(zone_dirs=...)) and
$DELIVERCK_DNSBL_LISTS.
"""

from pathlib import Path

HERE = Path(__file__).resolve().parent
ZONES = HERE / "zones"
DNSBL_LISTS = HERE / "dnsbl-lists.toml"
