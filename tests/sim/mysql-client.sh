#!/bin/sh
# Simulated Hopsworks mysql-client.sh (ndb-chef templates/default/mysql-client.sh.erb).
#
# `hwdrsim.py mysql-client-settings` logs this run, applies
# state_dir/control/mysql-client.sh and prints MYSQL_SOCKET and MYSQL_CONF (the
# values the real template gets from chef), MYSQL (the simulated client) and
# SIM_HANG as shell assignments.  The rest is the real wrapper's argument
# handling, unchanged but for `exec "$MYSQL"` in place of the installed mysql.

here=$(dirname "$(readlink -f "$0")")
settings=$(/usr/bin/python3 "$here/hwdrsim.py" mysql-client-settings "$@") || exit
eval "$settings"
if [ -n "$SIM_HANG" ] ; then
    exec sleep 3600
fi

EXECUTE_SQL=""
DB=
# Either a 'db' will be passed as an argument, or not:
# Case 1:
# mysql -u root -pPasswd mysql -e "show tables"
# Case 2:
# mysql -u root -pPasswd -e "show databases"
# Case 3 (to log into the shell):
# mysql -u root -pPasswd

if [ $# -gt 1 ] ; then
    EXECUTE_SQL="-e"
# Case 1
    if [ "$2" = "-e" ] ; then
	DB=$1
	shift  # remove 'db'
# Case 2
    fi
    shift # remove '-e'
fi

echo "Using socket: $MYSQL_SOCKET"
 if [ "$EXECUTE_SQL" = "-e" ] ; then
     exec "$MYSQL" --defaults-file=$MYSQL_CONF  $DB $EXECUTE_SQL "$@"
 else
  # Case 3
    exec "$MYSQL" --defaults-file=$MYSQL_CONF $DB  $@
 fi
