# bash completion for dbgate
# Generated from dbgate's command tree by `dbgate completion bash`: do not edit.
# Install: dbgate completion bash > ~/.local/share/bash-completion/completions/dbgate
#     or:  echo 'source <(dbgate completion bash)' >> ~/.bashrc

# Target names come from the gateway; `dbgate __complete targets` prints nothing when you are not logged in.
_dbgate_targets() {
  "${COMP_WORDS[0]}" __complete targets 2>/dev/null
}

_dbgate() {
  local cur="${COMP_WORDS[COMP_CWORD]}" prev="" command="" word i
  (( COMP_CWORD > 0 )) && prev="${COMP_WORDS[COMP_CWORD-1]}"
  # The command is the first word that is not an option (dbgate's own options take no value).
  for (( i = 1; i < COMP_CWORD; i++ )); do
    word="${COMP_WORDS[i]}"
    if [[ "$word" != -* ]]; then command="$word"; break; fi
  done
  local command_at=$i options="" value_options=""
  case "$command" in
    "")
      if [[ "$cur" == -* ]]; then
        COMPREPLY=($(compgen -W "-V --version -h --help" -- "$cur"))
      else
        COMPREPLY=($(compgen -W "login status whoami token logout targets connect query completion help" -- "$cur"))
      fi
      return 0 ;;
    login)
      command=login
      options="--gateway --profile --device --no-browser --insecure-storage --client-credentials --on-behalf-of --timeout -h --help"
      value_options="--gateway --profile --timeout" ;;
    status|whoami)
      command=status
      options="--profile --gateway --json -h --help"
      value_options="--profile --gateway" ;;
    token)
      command=token
      options="--profile --gateway -h --help"
      value_options="--profile --gateway" ;;
    logout)
      command=logout
      options="--profile -h --help"
      value_options="--profile" ;;
    targets)
      command=targets
      options="--json --profile --gateway -h --help"
      value_options="--profile --gateway" ;;
    connect)
      command=connect
      options="-p --port --json --gateway --profile --gateway-ca -h --help"
      value_options="-p --port --gateway --profile --gateway-ca" ;;
    query)
      command=query
      options="--json --csv --profile --gateway --gateway-ca -h --help"
      value_options="--profile --gateway --gateway-ca" ;;
    completion)
      command=completion
      options="-h --help"
      value_options="" ;;
    help)
      command=help
      options=""
      value_options="" ;;
    *) return 0 ;;
  esac
  # Which argument the cursor is on: words after the command that are neither options nor their values.
  local argument=0 dashdash=0
  for (( i = command_at + 1; i < COMP_CWORD; i++ )); do
    word="${COMP_WORDS[i]}"
    if (( dashdash )) || [[ "$word" != -* ]]; then
      argument=$((argument + 1))
    elif [[ "$word" == -- ]]; then
      dashdash=1
    elif [[ "$word" != *=* && " $value_options " == *" $word "* ]]; then
      i=$((i + 1))
    fi
  done
  if (( ! dashdash )) && [[ -n "$prev" && " $value_options " == *" $prev "* ]]; then
    case "$command $prev" in
      "connect --gateway-ca") compopt -o filenames 2>/dev/null; COMPREPLY=($(compgen -f -- "$cur")) ;;
      "query --gateway-ca") compopt -o filenames 2>/dev/null; COMPREPLY=($(compgen -f -- "$cur")) ;;
      *) COMPREPLY=() ;;
    esac
    return 0
  fi
  if (( ! dashdash )) && [[ "$cur" == -* ]]; then
    COMPREPLY=($(compgen -W "$options" -- "$cur"))
    return 0
  fi
  case "$command $argument" in
    "connect "0) COMPREPLY=($(compgen -W "$(_dbgate_targets)" -- "$cur")) ;;
    "connect "*) compopt -o default 2>/dev/null; COMPREPLY=() ;;
    "query "0) COMPREPLY=($(compgen -W "$(_dbgate_targets)" -- "$cur")) ;;
    "query "1) COMPREPLY=() ;;
    "completion "0) COMPREPLY=($(compgen -W "bash zsh fish" -- "$cur")) ;;
    "help "0) COMPREPLY=($(compgen -W "login status token logout targets connect query completion help" -- "$cur")) ;;
    *) COMPREPLY=() ;;
  esac
  return 0
}

complete -F _dbgate dbgate
