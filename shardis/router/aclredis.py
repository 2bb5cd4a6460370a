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
}
