# fish completion for dbgate
# Generated from dbgate's command tree by `dbgate completion fish`: do not edit.
# Install: dbgate completion fish > ~/.config/fish/completions/dbgate.fish

# Target names come from the gateway; `dbgate __complete targets` prints nothing when you are not logged in.
function __fish_dbgate_targets
    set -l program (commandline -opc)[1]
    $program __complete targets 2>/dev/null
end

# True when the word being completed is the command's argument number $argv[1] (0-based; "1+": the second or
# any later one). The rest of $argv are the command's options that take a value.
function __fish_dbgate_argument
    set -l wanted $argv[1]
    set -l value_options $argv[2..-1]
    set -l index -1
    set -l skip 0
    set -l dashdash 0
    for word in (commandline -opc)[2..-1]
        if test $skip -eq 1
            set skip 0
        else if test $dashdash -eq 0; and test "$word" = --
            set dashdash 1
        else if test $dashdash -eq 0; and string match -q -- '-*' $word
            contains -- $word $value_options; and set skip 1
        else
            set index (math $index + 1)
        end
    end
    if string match -q -- '*+' $wanted
        test $index -ge (string replace -- '+' '' $wanted)
    else
        test $index -eq $wanted
    end
end

complete -c dbgate -f
complete -c dbgate -n __fish_use_subcommand -s V -l version -d 'output the version number'
complete -c dbgate -n __fish_use_subcommand -s h -l help -d 'display help for command'
complete -c dbgate -n __fish_use_subcommand -a login -d 'sign in through the gateway\'s identity provider and store a dbgate credential'
complete -c dbgate -n __fish_use_subcommand -a status -d 'show who you are logged in as, at which gateway, and until when'
complete -c dbgate -n __fish_use_subcommand -a whoami -d 'show who you are logged in as, at which gateway, and until when'
complete -c dbgate -n __fish_use_subcommand -a token -d 'print the current dbgate credential (for PGPASSWORD)'
complete -c dbgate -n __fish_use_subcommand -a logout -d 'end your session at the gateway and delete the stored login'
complete -c dbgate -n __fish_use_subcommand -a targets -d 'list the targets you may reach, with your access level'
complete -c dbgate -n __fish_use_subcommand -a connect -d 'open a local PostgreSQL port that forwards to a target through the gateway'
complete -c dbgate -n __fish_use_subcommand -a query -d 'run SQL on a target through the gateway and print the result'
complete -c dbgate -n __fish_use_subcommand -a completion -d 'print a shell completion script (bash, zsh, fish)'
complete -c dbgate -n __fish_use_subcommand -a help -d 'display help for command'

# login
complete -c dbgate -n '__fish_seen_subcommand_from login' -l gateway -x -d 'gateway API URL (default: DBGATE_GATEWAY or the profile\'s gateway)'
complete -c dbgate -n '__fish_seen_subcommand_from login' -l profile -x -d 'keep this login apart from others (default: DBGATE_PROFILE or "default")'
complete -c dbgate -n '__fish_seen_subcommand_from login' -l device -d 'sign in on another device with a code (for SSH sessions and machines without a browser)'
complete -c dbgate -n '__fish_seen_subcommand_from login' -l no-browser -d 'do not open a browser; only print the sign-in URL'
complete -c dbgate -n '__fish_seen_subcommand_from login' -l insecure-storage -d 'store secrets in a 0600 file in the config dir instead of the OS keychain'
complete -c dbgate -n '__fish_seen_subcommand_from login' -l client-credentials -d 'log an agent in with DBGATE_CLIENT_ID and DBGATE_CLIENT_SECRET'
complete -c dbgate -n '__fish_seen_subcommand_from login' -l on-behalf-of -d 'with --client-credentials: act for the person whose IdP access token is in DBGATE_SUBJECT_TOKEN'
complete -c dbgate -n '__fish_seen_subcommand_from login' -l timeout -x -d 'how long to wait for the browser sign-in'
complete -c dbgate -n '__fish_seen_subcommand_from login' -s h -l help -d 'display help for command'

# status
complete -c dbgate -n '__fish_seen_subcommand_from status whoami' -l profile -x -d 'the login to show (default: DBGATE_PROFILE or "default")'
complete -c dbgate -n '__fish_seen_subcommand_from status whoami' -l gateway -x -d 'gateway API URL (default: DBGATE_GATEWAY or the stored login)'
complete -c dbgate -n '__fish_seen_subcommand_from status whoami' -l json -d 'print one JSON object (stable shape) on stdout'
complete -c dbgate -n '__fish_seen_subcommand_from status whoami' -s h -l help -d 'display help for command'

# token
complete -c dbgate -n '__fish_seen_subcommand_from token' -l profile -x -d 'the login to use (default: DBGATE_PROFILE or "default")'
complete -c dbgate -n '__fish_seen_subcommand_from token' -l gateway -x -d 'gateway API URL (default: DBGATE_GATEWAY or the stored login)'
complete -c dbgate -n '__fish_seen_subcommand_from token' -s h -l help -d 'display help for command'

# logout
complete -c dbgate -n '__fish_seen_subcommand_from logout' -l profile -x -d 'the login to end (default: DBGATE_PROFILE or "default")'
complete -c dbgate -n '__fish_seen_subcommand_from logout' -s h -l help -d 'display help for command'

# targets
complete -c dbgate -n '__fish_seen_subcommand_from targets' -l json -d 'print a JSON array of {name, access, description} on stdout'
complete -c dbgate -n '__fish_seen_subcommand_from targets' -l profile -x -d 'the login to use (default: DBGATE_PROFILE or "default")'
complete -c dbgate -n '__fish_seen_subcommand_from targets' -l gateway -x -d 'gateway API URL (default: DBGATE_GATEWAY or the stored login)'
complete -c dbgate -n '__fish_seen_subcommand_from targets' -s h -l help -d 'display help for command'

# connect
complete -c dbgate -n '__fish_seen_subcommand_from connect' -s p -l port -x -d 'local port on 127.0.0.1 (default: random)'
complete -c dbgate -n '__fish_seen_subcommand_from connect' -l json -d 'print one JSON line with host, port, user, password, database, uri when listening'
complete -c dbgate -n '__fish_seen_subcommand_from connect' -l gateway -x -d 'gateway API URL (default: DBGATE_GATEWAY or the stored login)'
complete -c dbgate -n '__fish_seen_subcommand_from connect' -l profile -x -d 'the login to use (default: DBGATE_PROFILE or "default")'
complete -c dbgate -n '__fish_seen_subcommand_from connect' -l gateway-ca -r -F -d 'verify the gateway\'s certificate with this CA instead of the pinned fingerprint'
complete -c dbgate -n '__fish_seen_subcommand_from connect' -s h -l help -d 'display help for command'
complete -c dbgate -n '__fish_seen_subcommand_from connect; and __fish_dbgate_argument 0 -p --port --gateway --profile --gateway-ca' -a '(__fish_dbgate_targets)'
complete -c dbgate -n '__fish_seen_subcommand_from connect; and __fish_dbgate_argument 1+ -p --port --gateway --profile --gateway-ca' -F

# query
complete -c dbgate -n '__fish_seen_subcommand_from query' -l json -d 'print {"columns", "rows", "row_count", "duration_ms"} on stdout'
complete -c dbgate -n '__fish_seen_subcommand_from query' -l csv -d 'print RFC 4180 CSV with a header line on stdout'
complete -c dbgate -n '__fish_seen_subcommand_from query' -l profile -x -d 'the login to use (default: DBGATE_PROFILE or "default")'
complete -c dbgate -n '__fish_seen_subcommand_from query' -l gateway -x -d 'gateway API URL (default: DBGATE_GATEWAY or the stored login)'
complete -c dbgate -n '__fish_seen_subcommand_from query' -l gateway-ca -r -F -d 'verify the gateway\'s certificate with this CA instead of the pinned fingerprint'
complete -c dbgate -n '__fish_seen_subcommand_from query' -s h -l help -d 'display help for command'
complete -c dbgate -n '__fish_seen_subcommand_from query; and __fish_dbgate_argument 0 --profile --gateway --gateway-ca' -a '(__fish_dbgate_targets)'

# completion
complete -c dbgate -n '__fish_seen_subcommand_from completion' -s h -l help -d 'display help for command'
complete -c dbgate -n '__fish_seen_subcommand_from completion; and __fish_dbgate_argument 0' -a 'bash zsh fish'

# help
complete -c dbgate -n '__fish_seen_subcommand_from help; and __fish_dbgate_argument 0' -a 'login status token logout targets connect query completion help'
