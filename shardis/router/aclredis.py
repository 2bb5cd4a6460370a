"""Redis 7.0.15's commands that shardis does not have, with their ACL categories.

ACL LIST and ACL GETUSER describe a user's commands as Redis's ``ACLDescribeSelectorCommand-
Rules`` does: the categories that fit best first, then single commands.  "Best" counts every
command of a category, so a category's size decides the description; shardis weighs each
category with these commands too (``shardis.router.acl.Universe``), which a rule grants or
denies as Redis would, so that the description is Redis's.  An entry shardis has since gained
is ignored.
"""

from __future__ import annotations

#: full name (``memory|doctor``) -> ACL categories, from Redis 7.0.15's COMMAND INFO.
REDIS_ONLY: dict[str, str] = {
    "asking": "fast connection",
    "cluster": "slow",
    "cluster|addslots": "admin slow dangerous",
    "cluster|addslotsrange": "admin slow dangerous",
    "cluster|bumpepoch": "admin slow dangerous",
    "cluster|count-failure-reports": "admin slow dangerous",
    "cluster|countkeysinslot": "slow",
    "cluster|delslots": "admin slow dangerous",
    "cluster|delslotsrange": "admin slow dangerous",
    "cluster|failover": "admin slow dangerous",
    "cluster|flushslots": "admin slow dangerous",
    "cluster|forget": "admin slow dangerous",
    "cluster|getkeysinslot": "slow",
    "cluster|help": "slow",
    "cluster|info": "slow",
    "cluster|keyslot": "slow",
    "cluster|links": "slow",
    "cluster|meet": "admin slow dangerous",
    "cluster|myid": "slow",
    "cluster|nodes": "slow",
    "cluster|replicas": "admin slow dangerous",
    "cluster|replicate": "admin slow dangerous",
    "cluster|reset": "admin slow dangerous",
    "cluster|saveconfig": "admin slow dangerous",
    "cluster|set-config-epoch": "admin slow dangerous",
    "cluster|setslot": "admin slow dangerous",
    "cluster|shards": "slow",
    "cluster|slaves": "admin slow dangerous",
    "cluster|slots": "slow",
    "command|getkeysandflags": "slow connection",
    "config|rewrite": "admin slow dangerous",
    "failover": "admin slow dangerous",
    "lolwut": "read fast",
    "memory|doctor": "slow",
    "memory|help": "slow",
    "memory|malloc-stats": "slow",
    "memory|purge": "slow",
    "memory|stats": "slow",
    "migrate": "keyspace write slow dangerous",
    "module": "slow",
    "module|help": "slow",
    "module|list": "admin slow dangerous",
    "module|load": "admin slow dangerous",
    "module|loadex": "admin slow dangerous",
    "module|unload": "admin slow dangerous",
    "move": "keyspace write fast",
    "psync": "admin slow dangerous",
    "readonly": "fast connection",
    "readwrite": "fast connection",
    "replconf": "admin slow dangerous",
    "replicaof": "admin slow dangerous",
    "restore-asking": "keyspace write slow dangerous",
    "role": "admin fast dangerous",
    "slaveof": "admin slow dangerous",
    "swapdb": "keyspace write fast dangerous",
    "sync": "admin slow dangerous",
    "wait": "slow connection",
}
