# Print an optspec for argparse to handle cmd's options that are independent of any subcommand.
function __fish_retriever_global_optspecs
    string join \n config= cloud= user= password-file= token-file= ca-bundle= client-cert= client-key= allow-insecure-http to= dest= to-tls to-ca= to-cert= to-key= to-server-name= calling-ae= cache= jobs= connect-timeout= idle-timeout= retries= max-instance-size= q/quiet log-file= h/help V/version
end

function __fish_retriever_needs_command
    # Figure out if the current invocation already has a command.
    set -l cmd (commandline -opc)
    set -e cmd[1]
    argparse -s (__fish_retriever_global_optspecs) -- $cmd 2>/dev/null
    or return
    if set -q argv[1]
        # Also print the command, so this can be used to figure out what it is.
        echo $argv[1]
        return 1
    end
    return 0
end

function __fish_retriever_using_subcommand
    set -l cmd (__fish_retriever_needs_command)
    test -z "$cmd"
    and return 1
    contains -- $cmd[1] $argv
end

complete -c retriever -n "__fish_retriever_needs_command" -l config -d 'JSON config file; flags beat environment, environment beats the file' -r -F
complete -c retriever -n "__fish_retriever_needs_command" -l cloud -d 'DICOMweb base URL of the cloud archive, e.g. https://cloud.example.org/dicom-web' -r
complete -c retriever -n "__fish_retriever_needs_command" -l user -d 'HTTP Basic user name (the password comes from RETRIEVER_PASSWORD, --password-file or the config file)' -r
complete -c retriever -n "__fish_retriever_needs_command" -l password-file -d 'File holding the HTTP Basic password (first line)' -r -F
complete -c retriever -n "__fish_retriever_needs_command" -l token-file -d 'File holding a Bearer token (first line)' -r -F
complete -c retriever -n "__fish_retriever_needs_command" -l ca-bundle -d 'Extra CA certificates (PEM) to trust for the cloud, besides the system\'s' -r -F
complete -c retriever -n "__fish_retriever_needs_command" -l client-cert -d 'Our client certificate (PEM) for a cloud that asks for one (mutual TLS); needs --client-key' -r -F
complete -c retriever -n "__fish_retriever_needs_command" -l client-key -d 'The private key (PEM, unencrypted) of --client-cert; a file only this account can read' -r -F
complete -c retriever -n "__fish_retriever_needs_command" -l to -d 'The DICOM destination, e.g. PACS@10.0.0.5:104' -r
complete -c retriever -n "__fish_retriever_needs_command" -l dest -d 'Only this destination of the config file\'s `destinations` (by name; repeat for several) [default: all]' -r
complete -c retriever -n "__fish_retriever_needs_command" -l to-ca -d 'CA certificates (PEM) to trust for the destination\'s TLS certificate, besides the system\'s' -r -F
complete -c retriever -n "__fish_retriever_needs_command" -l to-cert -d 'Our client certificate (PEM) for a destination that asks for one (with --to-key)' -r -F
complete -c retriever -n "__fish_retriever_needs_command" -l to-key -d 'The private key (PEM) of --to-cert' -r -F
complete -c retriever -n "__fish_retriever_needs_command" -l to-server-name -d 'The name the destination\'s TLS certificate must be for [default: the host of --to]' -r
complete -c retriever -n "__fish_retriever_needs_command" -l calling-ae -d 'Our AE title, as the destination sees it [default: RETRIEVER]' -r
complete -c retriever -n "__fish_retriever_needs_command" -l cache -d 'The cache directory [default: the platform\'s local cache folder]' -r -F
complete -c retriever -n "__fish_retriever_needs_command" -l jobs -d 'Parallel downloads from the cloud [default: 4]' -r
complete -c retriever -n "__fish_retriever_needs_command" -l connect-timeout -d 'Time allowed to connect to the cloud [default: 10s]' -r
complete -c retriever -n "__fish_retriever_needs_command" -l idle-timeout -d 'Time a transfer may go without receiving any data [default: 60s]' -r
complete -c retriever -n "__fish_retriever_needs_command" -l retries -d 'Retries after a transient failure (connection lost, 5xx, 429) [default: 5]' -r
complete -c retriever -n "__fish_retriever_needs_command" -l max-instance-size -d 'Largest single instance taken from the cloud, e.g. 512MiB, 8GiB; a larger one is refused [default: 4GiB]' -r
complete -c retriever -n "__fish_retriever_needs_command" -l log-file -d 'Append the log of `watch` to this file, one line per event, rotated at 10 MiB (FILE.1 to FILE.5 kept); for `service install`, the service\'s log [default: %ProgramData%\\retriever\\log\\NAME.log]' -r -F
complete -c retriever -n "__fish_retriever_needs_command" -l allow-insecure-http -d 'Allow plain, unencrypted http:// to a cloud that is not on this machine'
complete -c retriever -n "__fish_retriever_needs_command" -l to-tls -d 'DICOM TLS to the destination (--to); there is never a fallback to plain TCP'
complete -c retriever -n "__fish_retriever_needs_command" -s q -l quiet -d 'No progress bars, only errors on stderr'
complete -c retriever -n "__fish_retriever_needs_command" -s h -l help -d 'Print help'
complete -c retriever -n "__fish_retriever_needs_command" -s V -l version -d 'Print version'
complete -c retriever -n "__fish_retriever_needs_command" -f -a "fetch" -d 'Pull studies and their prior studies from the cloud into the cache'
complete -c retriever -n "__fish_retriever_needs_command" -f -a "ls" -d 'Show what is in the cache, and its state'
complete -c retriever -n "__fish_retriever_needs_command" -f -a "store" -d 'Deliver cached studies to the DICOM destination with C-STORE'
complete -c retriever -n "__fish_retriever_needs_command" -f -a "watch" -d 'The router: search the cloud again and again, fetch each new study with its priors, deliver them'
complete -c retriever -n "__fish_retriever_needs_command" -f -a "prune" -d 'Remove studies older than the retention from the cache, and what crashed runs left behind'
complete -c retriever -n "__fish_retriever_needs_command" -f -a "echo" -d 'Check the DICOM destination with C-ECHO'
complete -c retriever -n "__fish_retriever_needs_command" -f -a "config" -d 'Show the effective configuration and where each value came from (secrets shown as ***)'
complete -c retriever -n "__fish_retriever_needs_command" -f -a "status" -d 'Is the router (`watch`) in this cache running and working? Exit status 0 yes, 1 no (for monitoring)'
complete -c retriever -n "__fish_retriever_needs_command" -f -a "service" -d 'Run the router (`watch`) as a Windows service: install, uninstall, start, stop'
complete -c retriever -n "__fish_retriever_needs_command" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c retriever -n "__fish_retriever_using_subcommand fetch" -l transfer-syntax -d 'Ask the cloud for this transfer syntax (UID) instead of the original bytes' -r
complete -c retriever -n "__fish_retriever_using_subcommand fetch" -l priors -d 'How many prior studies of the same patient to fetch with each study [default: 3]' -r
complete -c retriever -n "__fish_retriever_using_subcommand fetch" -l prior-years -d 'How far back a prior may be, in years [default: 5]' -r
complete -c retriever -n "__fish_retriever_using_subcommand fetch" -l prior-modality -d 'Which modalities a prior may have [default: any]' -r -f -a "any\t'Any modality'
same\t'At least one modality in common with the current study'"
complete -c retriever -n "__fish_retriever_using_subcommand fetch" -l associations -d 'Associations opened in parallel to the destination (1 to 32) [default: 2]' -r
complete -c retriever -n "__fish_retriever_using_subcommand fetch" -l max-pdu -d 'Largest PDU we receive, and send if the destination takes it (4096 to 4194304) [default: 16384]' -r
complete -c retriever -n "__fish_retriever_using_subcommand fetch" -l dicom-connect-timeout -d 'Time allowed to open the TCP connection to the destination [default: 10s]' -r
complete -c retriever -n "__fish_retriever_using_subcommand fetch" -l acse-timeout -d 'Time allowed for the destination to answer an association or release request, and for the TLS handshake with --to-tls [default: 30s]' -r
complete -c retriever -n "__fish_retriever_using_subcommand fetch" -l dimse-timeout -d 'Time the destination may stay silent while an instance is sent, and the most its whole answer may take [default: 60s]' -r
complete -c retriever -n "__fish_retriever_using_subcommand fetch" -l store-retries -d 'Retries of an instance within one run, after "out of resources" or no answer (a study whose requests go unanswered twice in a row is given up), and of an association the destination is too busy to accept [default: 3]' -r
complete -c retriever -n "__fish_retriever_using_subcommand fetch" -l config -d 'JSON config file; flags beat environment, environment beats the file' -r -F
complete -c retriever -n "__fish_retriever_using_subcommand fetch" -l cloud -d 'DICOMweb base URL of the cloud archive, e.g. https://cloud.example.org/dicom-web' -r
complete -c retriever -n "__fish_retriever_using_subcommand fetch" -l user -d 'HTTP Basic user name (the password comes from RETRIEVER_PASSWORD, --password-file or the config file)' -r
complete -c retriever -n "__fish_retriever_using_subcommand fetch" -l password-file -d 'File holding the HTTP Basic password (first line)' -r -F
complete -c retriever -n "__fish_retriever_using_subcommand fetch" -l token-file -d 'File holding a Bearer token (first line)' -r -F
complete -c retriever -n "__fish_retriever_using_subcommand fetch" -l ca-bundle -d 'Extra CA certificates (PEM) to trust for the cloud, besides the system\'s' -r -F
complete -c retriever -n "__fish_retriever_using_subcommand fetch" -l client-cert -d 'Our client certificate (PEM) for a cloud that asks for one (mutual TLS); needs --client-key' -r -F
complete -c retriever -n "__fish_retriever_using_subcommand fetch" -l client-key -d 'The private key (PEM, unencrypted) of --client-cert; a file only this account can read' -r -F
complete -c retriever -n "__fish_retriever_using_subcommand fetch" -l to -d 'The DICOM destination, e.g. PACS@10.0.0.5:104' -r
complete -c retriever -n "__fish_retriever_using_subcommand fetch" -l dest -d 'Only this destination of the config file\'s `destinations` (by name; repeat for several) [default: all]' -r
complete -c retriever -n "__fish_retriever_using_subcommand fetch" -l to-ca -d 'CA certificates (PEM) to trust for the destination\'s TLS certificate, besides the system\'s' -r -F
complete -c retriever -n "__fish_retriever_using_subcommand fetch" -l to-cert -d 'Our client certificate (PEM) for a destination that asks for one (with --to-key)' -r -F
complete -c retriever -n "__fish_retriever_using_subcommand fetch" -l to-key -d 'The private key (PEM) of --to-cert' -r -F
complete -c retriever -n "__fish_retriever_using_subcommand fetch" -l to-server-name -d 'The name the destination\'s TLS certificate must be for [default: the host of --to]' -r
complete -c retriever -n "__fish_retriever_using_subcommand fetch" -l calling-ae -d 'Our AE title, as the destination sees it [default: RETRIEVER]' -r
complete -c retriever -n "__fish_retriever_using_subcommand fetch" -l cache -d 'The cache directory [default: the platform\'s local cache folder]' -r -F
complete -c retriever -n "__fish_retriever_using_subcommand fetch" -l jobs -d 'Parallel downloads from the cloud [default: 4]' -r
complete -c retriever -n "__fish_retriever_using_subcommand fetch" -l connect-timeout -d 'Time allowed to connect to the cloud [default: 10s]' -r
complete -c retriever -n "__fish_retriever_using_subcommand fetch" -l idle-timeout -d 'Time a transfer may go without receiving any data [default: 60s]' -r
complete -c retriever -n "__fish_retriever_using_subcommand fetch" -l retries -d 'Retries after a transient failure (connection lost, 5xx, 429) [default: 5]' -r
complete -c retriever -n "__fish_retriever_using_subcommand fetch" -l max-instance-size -d 'Largest single instance taken from the cloud, e.g. 512MiB, 8GiB; a larger one is refused [default: 4GiB]' -r
complete -c retriever -n "__fish_retriever_using_subcommand fetch" -l log-file -d 'Append the log of `watch` to this file, one line per event, rotated at 10 MiB (FILE.1 to FILE.5 kept); for `service install`, the service\'s log [default: %ProgramData%\\retriever\\log\\NAME.log]' -r -F
complete -c retriever -n "__fish_retriever_using_subcommand fetch" -l dry-run -l explain -d 'Show which studies would be fetched and why each prior was chosen or passed over, without downloading'
complete -c retriever -n "__fish_retriever_using_subcommand fetch" -l json -d 'One JSON object per line on stdout instead of text'
complete -c retriever -n "__fish_retriever_using_subcommand fetch" -l store -d 'Then deliver the studies made complete to the destination (--to), as `store` does'
complete -c retriever -n "__fish_retriever_using_subcommand fetch" -l decompress-lossy -d 'Decompress lossy JPEG here when the destination does not take it compressed (otherwise the cloud is asked for it in a syntax the destination takes)'
complete -c retriever -n "__fish_retriever_using_subcommand fetch" -l allow-insecure-http -d 'Allow plain, unencrypted http:// to a cloud that is not on this machine'
complete -c retriever -n "__fish_retriever_using_subcommand fetch" -l to-tls -d 'DICOM TLS to the destination (--to); there is never a fallback to plain TCP'
complete -c retriever -n "__fish_retriever_using_subcommand fetch" -s q -l quiet -d 'No progress bars, only errors on stderr'
complete -c retriever -n "__fish_retriever_using_subcommand fetch" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c retriever -n "__fish_retriever_using_subcommand ls" -l config -d 'JSON config file; flags beat environment, environment beats the file' -r -F
complete -c retriever -n "__fish_retriever_using_subcommand ls" -l cloud -d 'DICOMweb base URL of the cloud archive, e.g. https://cloud.example.org/dicom-web' -r
complete -c retriever -n "__fish_retriever_using_subcommand ls" -l user -d 'HTTP Basic user name (the password comes from RETRIEVER_PASSWORD, --password-file or the config file)' -r
complete -c retriever -n "__fish_retriever_using_subcommand ls" -l password-file -d 'File holding the HTTP Basic password (first line)' -r -F
complete -c retriever -n "__fish_retriever_using_subcommand ls" -l token-file -d 'File holding a Bearer token (first line)' -r -F
complete -c retriever -n "__fish_retriever_using_subcommand ls" -l ca-bundle -d 'Extra CA certificates (PEM) to trust for the cloud, besides the system\'s' -r -F
complete -c retriever -n "__fish_retriever_using_subcommand ls" -l client-cert -d 'Our client certificate (PEM) for a cloud that asks for one (mutual TLS); needs --client-key' -r -F
complete -c retriever -n "__fish_retriever_using_subcommand ls" -l client-key -d 'The private key (PEM, unencrypted) of --client-cert; a file only this account can read' -r -F
complete -c retriever -n "__fish_retriever_using_subcommand ls" -l to -d 'The DICOM destination, e.g. PACS@10.0.0.5:104' -r
complete -c retriever -n "__fish_retriever_using_subcommand ls" -l dest -d 'Only this destination of the config file\'s `destinations` (by name; repeat for several) [default: all]' -r
complete -c retriever -n "__fish_retriever_using_subcommand ls" -l to-ca -d 'CA certificates (PEM) to trust for the destination\'s TLS certificate, besides the system\'s' -r -F
complete -c retriever -n "__fish_retriever_using_subcommand ls" -l to-cert -d 'Our client certificate (PEM) for a destination that asks for one (with --to-key)' -r -F
complete -c retriever -n "__fish_retriever_using_subcommand ls" -l to-key -d 'The private key (PEM) of --to-cert' -r -F
complete -c retriever -n "__fish_retriever_using_subcommand ls" -l to-server-name -d 'The name the destination\'s TLS certificate must be for [default: the host of --to]' -r
complete -c retriever -n "__fish_retriever_using_subcommand ls" -l calling-ae -d 'Our AE title, as the destination sees it [default: RETRIEVER]' -r
complete -c retriever -n "__fish_retriever_using_subcommand ls" -l cache -d 'The cache directory [default: the platform\'s local cache folder]' -r -F
complete -c retriever -n "__fish_retriever_using_subcommand ls" -l jobs -d 'Parallel downloads from the cloud [default: 4]' -r
complete -c retriever -n "__fish_retriever_using_subcommand ls" -l connect-timeout -d 'Time allowed to connect to the cloud [default: 10s]' -r
complete -c retriever -n "__fish_retriever_using_subcommand ls" -l idle-timeout -d 'Time a transfer may go without receiving any data [default: 60s]' -r
complete -c retriever -n "__fish_retriever_using_subcommand ls" -l retries -d 'Retries after a transient failure (connection lost, 5xx, 429) [default: 5]' -r
complete -c retriever -n "__fish_retriever_using_subcommand ls" -l max-instance-size -d 'Largest single instance taken from the cloud, e.g. 512MiB, 8GiB; a larger one is refused [default: 4GiB]' -r
complete -c retriever -n "__fish_retriever_using_subcommand ls" -l log-file -d 'Append the log of `watch` to this file, one line per event, rotated at 10 MiB (FILE.1 to FILE.5 kept); for `service install`, the service\'s log [default: %ProgramData%\\retriever\\log\\NAME.log]' -r -F
complete -c retriever -n "__fish_retriever_using_subcommand ls" -l json -d 'One JSON object per line instead of a table'
complete -c retriever -n "__fish_retriever_using_subcommand ls" -l wide -d 'Every column in full, however wide (the table fits 100 columns otherwise)'
complete -c retriever -n "__fish_retriever_using_subcommand ls" -l allow-insecure-http -d 'Allow plain, unencrypted http:// to a cloud that is not on this machine'
complete -c retriever -n "__fish_retriever_using_subcommand ls" -l to-tls -d 'DICOM TLS to the destination (--to); there is never a fallback to plain TCP'
complete -c retriever -n "__fish_retriever_using_subcommand ls" -s q -l quiet -d 'No progress bars, only errors on stderr'
complete -c retriever -n "__fish_retriever_using_subcommand ls" -s h -l help -d 'Print help'
complete -c retriever -n "__fish_retriever_using_subcommand store" -l associations -d 'Associations opened in parallel to the destination (1 to 32) [default: 2]' -r
complete -c retriever -n "__fish_retriever_using_subcommand store" -l max-pdu -d 'Largest PDU we receive, and send if the destination takes it (4096 to 4194304) [default: 16384]' -r
complete -c retriever -n "__fish_retriever_using_subcommand store" -l dicom-connect-timeout -d 'Time allowed to open the TCP connection to the destination [default: 10s]' -r
complete -c retriever -n "__fish_retriever_using_subcommand store" -l acse-timeout -d 'Time allowed for the destination to answer an association or release request, and for the TLS handshake with --to-tls [default: 30s]' -r
complete -c retriever -n "__fish_retriever_using_subcommand store" -l dimse-timeout -d 'Time the destination may stay silent while an instance is sent, and the most its whole answer may take [default: 60s]' -r
complete -c retriever -n "__fish_retriever_using_subcommand store" -l store-retries -d 'Retries of an instance within one run, after "out of resources" or no answer (a study whose requests go unanswered twice in a row is given up), and of an association the destination is too busy to accept [default: 3]' -r
complete -c retriever -n "__fish_retriever_using_subcommand store" -l config -d 'JSON config file; flags beat environment, environment beats the file' -r -F
complete -c retriever -n "__fish_retriever_using_subcommand store" -l cloud -d 'DICOMweb base URL of the cloud archive, e.g. https://cloud.example.org/dicom-web' -r
complete -c retriever -n "__fish_retriever_using_subcommand store" -l user -d 'HTTP Basic user name (the password comes from RETRIEVER_PASSWORD, --password-file or the config file)' -r
complete -c retriever -n "__fish_retriever_using_subcommand store" -l password-file -d 'File holding the HTTP Basic password (first line)' -r -F
complete -c retriever -n "__fish_retriever_using_subcommand store" -l token-file -d 'File holding a Bearer token (first line)' -r -F
complete -c retriever -n "__fish_retriever_using_subcommand store" -l ca-bundle -d 'Extra CA certificates (PEM) to trust for the cloud, besides the system\'s' -r -F
complete -c retriever -n "__fish_retriever_using_subcommand store" -l client-cert -d 'Our client certificate (PEM) for a cloud that asks for one (mutual TLS); needs --client-key' -r -F
complete -c retriever -n "__fish_retriever_using_subcommand store" -l client-key -d 'The private key (PEM, unencrypted) of --client-cert; a file only this account can read' -r -F
complete -c retriever -n "__fish_retriever_using_subcommand store" -l to -d 'The DICOM destination, e.g. PACS@10.0.0.5:104' -r
complete -c retriever -n "__fish_retriever_using_subcommand store" -l dest -d 'Only this destination of the config file\'s `destinations` (by name; repeat for several) [default: all]' -r
complete -c retriever -n "__fish_retriever_using_subcommand store" -l to-ca -d 'CA certificates (PEM) to trust for the destination\'s TLS certificate, besides the system\'s' -r -F
complete -c retriever -n "__fish_retriever_using_subcommand store" -l to-cert -d 'Our client certificate (PEM) for a destination that asks for one (with --to-key)' -r -F
complete -c retriever -n "__fish_retriever_using_subcommand store" -l to-key -d 'The private key (PEM) of --to-cert' -r -F
complete -c retriever -n "__fish_retriever_using_subcommand store" -l to-server-name -d 'The name the destination\'s TLS certificate must be for [default: the host of --to]' -r
complete -c retriever -n "__fish_retriever_using_subcommand store" -l calling-ae -d 'Our AE title, as the destination sees it [default: RETRIEVER]' -r
complete -c retriever -n "__fish_retriever_using_subcommand store" -l cache -d 'The cache directory [default: the platform\'s local cache folder]' -r -F
complete -c retriever -n "__fish_retriever_using_subcommand store" -l jobs -d 'Parallel downloads from the cloud [default: 4]' -r
complete -c retriever -n "__fish_retriever_using_subcommand store" -l connect-timeout -d 'Time allowed to connect to the cloud [default: 10s]' -r
complete -c retriever -n "__fish_retriever_using_subcommand store" -l idle-timeout -d 'Time a transfer may go without receiving any data [default: 60s]' -r
complete -c retriever -n "__fish_retriever_using_subcommand store" -l retries -d 'Retries after a transient failure (connection lost, 5xx, 429) [default: 5]' -r
complete -c retriever -n "__fish_retriever_using_subcommand store" -l max-instance-size -d 'Largest single instance taken from the cloud, e.g. 512MiB, 8GiB; a larger one is refused [default: 4GiB]' -r
complete -c retriever -n "__fish_retriever_using_subcommand store" -l log-file -d 'Append the log of `watch` to this file, one line per event, rotated at 10 MiB (FILE.1 to FILE.5 kept); for `service install`, the service\'s log [default: %ProgramData%\\retriever\\log\\NAME.log]' -r -F
complete -c retriever -n "__fish_retriever_using_subcommand store" -l json -d 'One JSON object per line on stdout instead of text'
complete -c retriever -n "__fish_retriever_using_subcommand store" -l decompress-lossy -d 'Decompress lossy JPEG here when the destination does not take it compressed (otherwise the cloud is asked for it in a syntax the destination takes)'
complete -c retriever -n "__fish_retriever_using_subcommand store" -l allow-insecure-http -d 'Allow plain, unencrypted http:// to a cloud that is not on this machine'
complete -c retriever -n "__fish_retriever_using_subcommand store" -l to-tls -d 'DICOM TLS to the destination (--to); there is never a fallback to plain TCP'
complete -c retriever -n "__fish_retriever_using_subcommand store" -s q -l quiet -d 'No progress bars, only errors on stderr'
complete -c retriever -n "__fish_retriever_using_subcommand store" -s h -l help -d 'Print help'
complete -c retriever -n "__fish_retriever_using_subcommand watch" -l interval -d 'Time between two searches of the cloud [default: 30s]' -r
complete -c retriever -n "__fish_retriever_using_subcommand watch" -l filter -d 'The studies to route: a QIDO-RS matching key and value, e.g. ModalitiesInStudy=CT or "StudyDate=last 24 hours"; repeat for several; replaces watch_filter of the config file [default: "StudyDate=last 24 hours"]' -r
complete -c retriever -n "__fish_retriever_using_subcommand watch" -l stable-age -d 'A study whose number of instances has not changed for this long is settled, and no longer looked at for new instances unless the cloud reports a new count [default: 60s]' -r
complete -c retriever -n "__fish_retriever_using_subcommand watch" -l metrics-file -d 'Also keep the figures of `retriever status` in this file, in the Prometheus text format (for node_exporter\'s textfile collector: a FILE ending in .prom in its directory)' -r -F
complete -c retriever -n "__fish_retriever_using_subcommand watch" -l priors -d 'How many prior studies of the same patient to fetch with each study [default: 3]' -r
complete -c retriever -n "__fish_retriever_using_subcommand watch" -l prior-years -d 'How far back a prior may be, in years [default: 5]' -r
complete -c retriever -n "__fish_retriever_using_subcommand watch" -l prior-modality -d 'Which modalities a prior may have [default: any]' -r -f -a "any\t'Any modality'
same\t'At least one modality in common with the current study'"
complete -c retriever -n "__fish_retriever_using_subcommand watch" -l associations -d 'Associations opened in parallel to the destination (1 to 32) [default: 2]' -r
complete -c retriever -n "__fish_retriever_using_subcommand watch" -l max-pdu -d 'Largest PDU we receive, and send if the destination takes it (4096 to 4194304) [default: 16384]' -r
complete -c retriever -n "__fish_retriever_using_subcommand watch" -l dicom-connect-timeout -d 'Time allowed to open the TCP connection to the destination [default: 10s]' -r
complete -c retriever -n "__fish_retriever_using_subcommand watch" -l acse-timeout -d 'Time allowed for the destination to answer an association or release request, and for the TLS handshake with --to-tls [default: 30s]' -r
complete -c retriever -n "__fish_retriever_using_subcommand watch" -l dimse-timeout -d 'Time the destination may stay silent while an instance is sent, and the most its whole answer may take [default: 60s]' -r
complete -c retriever -n "__fish_retriever_using_subcommand watch" -l store-retries -d 'Retries of an instance within one run, after "out of resources" or no answer (a study whose requests go unanswered twice in a row is given up), and of an association the destination is too busy to accept [default: 3]' -r
complete -c retriever -n "__fish_retriever_using_subcommand watch" -l config -d 'JSON config file; flags beat environment, environment beats the file' -r -F
complete -c retriever -n "__fish_retriever_using_subcommand watch" -l cloud -d 'DICOMweb base URL of the cloud archive, e.g. https://cloud.example.org/dicom-web' -r
complete -c retriever -n "__fish_retriever_using_subcommand watch" -l user -d 'HTTP Basic user name (the password comes from RETRIEVER_PASSWORD, --password-file or the config file)' -r
complete -c retriever -n "__fish_retriever_using_subcommand watch" -l password-file -d 'File holding the HTTP Basic password (first line)' -r -F
complete -c retriever -n "__fish_retriever_using_subcommand watch" -l token-file -d 'File holding a Bearer token (first line)' -r -F
complete -c retriever -n "__fish_retriever_using_subcommand watch" -l ca-bundle -d 'Extra CA certificates (PEM) to trust for the cloud, besides the system\'s' -r -F
complete -c retriever -n "__fish_retriever_using_subcommand watch" -l client-cert -d 'Our client certificate (PEM) for a cloud that asks for one (mutual TLS); needs --client-key' -r -F
complete -c retriever -n "__fish_retriever_using_subcommand watch" -l client-key -d 'The private key (PEM, unencrypted) of --client-cert; a file only this account can read' -r -F
complete -c retriever -n "__fish_retriever_using_subcommand watch" -l to -d 'The DICOM destination, e.g. PACS@10.0.0.5:104' -r
complete -c retriever -n "__fish_retriever_using_subcommand watch" -l dest -d 'Only this destination of the config file\'s `destinations` (by name; repeat for several) [default: all]' -r
complete -c retriever -n "__fish_retriever_using_subcommand watch" -l to-ca -d 'CA certificates (PEM) to trust for the destination\'s TLS certificate, besides the system\'s' -r -F
complete -c retriever -n "__fish_retriever_using_subcommand watch" -l to-cert -d 'Our client certificate (PEM) for a destination that asks for one (with --to-key)' -r -F
complete -c retriever -n "__fish_retriever_using_subcommand watch" -l to-key -d 'The private key (PEM) of --to-cert' -r -F
complete -c retriever -n "__fish_retriever_using_subcommand watch" -l to-server-name -d 'The name the destination\'s TLS certificate must be for [default: the host of --to]' -r
complete -c retriever -n "__fish_retriever_using_subcommand watch" -l calling-ae -d 'Our AE title, as the destination sees it [default: RETRIEVER]' -r
complete -c retriever -n "__fish_retriever_using_subcommand watch" -l cache -d 'The cache directory [default: the platform\'s local cache folder]' -r -F
complete -c retriever -n "__fish_retriever_using_subcommand watch" -l jobs -d 'Parallel downloads from the cloud [default: 4]' -r
complete -c retriever -n "__fish_retriever_using_subcommand watch" -l connect-timeout -d 'Time allowed to connect to the cloud [default: 10s]' -r
complete -c retriever -n "__fish_retriever_using_subcommand watch" -l idle-timeout -d 'Time a transfer may go without receiving any data [default: 60s]' -r
complete -c retriever -n "__fish_retriever_using_subcommand watch" -l retries -d 'Retries after a transient failure (connection lost, 5xx, 429) [default: 5]' -r
complete -c retriever -n "__fish_retriever_using_subcommand watch" -l max-instance-size -d 'Largest single instance taken from the cloud, e.g. 512MiB, 8GiB; a larger one is refused [default: 4GiB]' -r
complete -c retriever -n "__fish_retriever_using_subcommand watch" -l log-file -d 'Append the log of `watch` to this file, one line per event, rotated at 10 MiB (FILE.1 to FILE.5 kept); for `service install`, the service\'s log [default: %ProgramData%\\retriever\\log\\NAME.log]' -r -F
complete -c retriever -n "__fish_retriever_using_subcommand watch" -l once -d 'One pass: search once, fetch and deliver what was found, then exit (status 0 only if all of it was delivered)'
complete -c retriever -n "__fish_retriever_using_subcommand watch" -l json -d 'One JSON object per line on stdout for each study delivered, instead of text'
complete -c retriever -n "__fish_retriever_using_subcommand watch" -l decompress-lossy -d 'Decompress lossy JPEG here when the destination does not take it compressed (otherwise the cloud is asked for it in a syntax the destination takes)'
complete -c retriever -n "__fish_retriever_using_subcommand watch" -l allow-insecure-http -d 'Allow plain, unencrypted http:// to a cloud that is not on this machine'
complete -c retriever -n "__fish_retriever_using_subcommand watch" -l to-tls -d 'DICOM TLS to the destination (--to); there is never a fallback to plain TCP'
complete -c retriever -n "__fish_retriever_using_subcommand watch" -s q -l quiet -d 'No progress bars, only errors on stderr'
complete -c retriever -n "__fish_retriever_using_subcommand watch" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c retriever -n "__fish_retriever_using_subcommand prune" -l older-than -d 'Remove studies last fetched or delivered longer ago than this, e.g. 90m, 4h, 2d [default: "retention" in the config file, else 4h]' -r
complete -c retriever -n "__fish_retriever_using_subcommand prune" -l config -d 'JSON config file; flags beat environment, environment beats the file' -r -F
complete -c retriever -n "__fish_retriever_using_subcommand prune" -l cloud -d 'DICOMweb base URL of the cloud archive, e.g. https://cloud.example.org/dicom-web' -r
complete -c retriever -n "__fish_retriever_using_subcommand prune" -l user -d 'HTTP Basic user name (the password comes from RETRIEVER_PASSWORD, --password-file or the config file)' -r
complete -c retriever -n "__fish_retriever_using_subcommand prune" -l password-file -d 'File holding the HTTP Basic password (first line)' -r -F
complete -c retriever -n "__fish_retriever_using_subcommand prune" -l token-file -d 'File holding a Bearer token (first line)' -r -F
complete -c retriever -n "__fish_retriever_using_subcommand prune" -l ca-bundle -d 'Extra CA certificates (PEM) to trust for the cloud, besides the system\'s' -r -F
complete -c retriever -n "__fish_retriever_using_subcommand prune" -l client-cert -d 'Our client certificate (PEM) for a cloud that asks for one (mutual TLS); needs --client-key' -r -F
complete -c retriever -n "__fish_retriever_using_subcommand prune" -l client-key -d 'The private key (PEM, unencrypted) of --client-cert; a file only this account can read' -r -F
complete -c retriever -n "__fish_retriever_using_subcommand prune" -l to -d 'The DICOM destination, e.g. PACS@10.0.0.5:104' -r
complete -c retriever -n "__fish_retriever_using_subcommand prune" -l dest -d 'Only this destination of the config file\'s `destinations` (by name; repeat for several) [default: all]' -r
complete -c retriever -n "__fish_retriever_using_subcommand prune" -l to-ca -d 'CA certificates (PEM) to trust for the destination\'s TLS certificate, besides the system\'s' -r -F
complete -c retriever -n "__fish_retriever_using_subcommand prune" -l to-cert -d 'Our client certificate (PEM) for a destination that asks for one (with --to-key)' -r -F
complete -c retriever -n "__fish_retriever_using_subcommand prune" -l to-key -d 'The private key (PEM) of --to-cert' -r -F
complete -c retriever -n "__fish_retriever_using_subcommand prune" -l to-server-name -d 'The name the destination\'s TLS certificate must be for [default: the host of --to]' -r
complete -c retriever -n "__fish_retriever_using_subcommand prune" -l calling-ae -d 'Our AE title, as the destination sees it [default: RETRIEVER]' -r
complete -c retriever -n "__fish_retriever_using_subcommand prune" -l cache -d 'The cache directory [default: the platform\'s local cache folder]' -r -F
complete -c retriever -n "__fish_retriever_using_subcommand prune" -l jobs -d 'Parallel downloads from the cloud [default: 4]' -r
complete -c retriever -n "__fish_retriever_using_subcommand prune" -l connect-timeout -d 'Time allowed to connect to the cloud [default: 10s]' -r
complete -c retriever -n "__fish_retriever_using_subcommand prune" -l idle-timeout -d 'Time a transfer may go without receiving any data [default: 60s]' -r
complete -c retriever -n "__fish_retriever_using_subcommand prune" -l retries -d 'Retries after a transient failure (connection lost, 5xx, 429) [default: 5]' -r
complete -c retriever -n "__fish_retriever_using_subcommand prune" -l max-instance-size -d 'Largest single instance taken from the cloud, e.g. 512MiB, 8GiB; a larger one is refused [default: 4GiB]' -r
complete -c retriever -n "__fish_retriever_using_subcommand prune" -l log-file -d 'Append the log of `watch` to this file, one line per event, rotated at 10 MiB (FILE.1 to FILE.5 kept); for `service install`, the service\'s log [default: %ProgramData%\\retriever\\log\\NAME.log]' -r -F
complete -c retriever -n "__fish_retriever_using_subcommand prune" -l dry-run -d 'Print what would be removed, and remove nothing'
complete -c retriever -n "__fish_retriever_using_subcommand prune" -l include-undelivered -d 'Also remove expired studies that are not delivered to the destination'
complete -c retriever -n "__fish_retriever_using_subcommand prune" -l json -d 'One JSON object per removed study on stdout instead of text'
complete -c retriever -n "__fish_retriever_using_subcommand prune" -l allow-insecure-http -d 'Allow plain, unencrypted http:// to a cloud that is not on this machine'
complete -c retriever -n "__fish_retriever_using_subcommand prune" -l to-tls -d 'DICOM TLS to the destination (--to); there is never a fallback to plain TCP'
complete -c retriever -n "__fish_retriever_using_subcommand prune" -s q -l quiet -d 'No progress bars, only errors on stderr'
complete -c retriever -n "__fish_retriever_using_subcommand prune" -s h -l help -d 'Print help'
complete -c retriever -n "__fish_retriever_using_subcommand echo" -l associations -d 'Associations opened in parallel to the destination (1 to 32) [default: 2]' -r
complete -c retriever -n "__fish_retriever_using_subcommand echo" -l max-pdu -d 'Largest PDU we receive, and send if the destination takes it (4096 to 4194304) [default: 16384]' -r
complete -c retriever -n "__fish_retriever_using_subcommand echo" -l dicom-connect-timeout -d 'Time allowed to open the TCP connection to the destination [default: 10s]' -r
complete -c retriever -n "__fish_retriever_using_subcommand echo" -l acse-timeout -d 'Time allowed for the destination to answer an association or release request, and for the TLS handshake with --to-tls [default: 30s]' -r
complete -c retriever -n "__fish_retriever_using_subcommand echo" -l dimse-timeout -d 'Time the destination may stay silent while an instance is sent, and the most its whole answer may take [default: 60s]' -r
complete -c retriever -n "__fish_retriever_using_subcommand echo" -l store-retries -d 'Retries of an instance within one run, after "out of resources" or no answer (a study whose requests go unanswered twice in a row is given up), and of an association the destination is too busy to accept [default: 3]' -r
complete -c retriever -n "__fish_retriever_using_subcommand echo" -l config -d 'JSON config file; flags beat environment, environment beats the file' -r -F
complete -c retriever -n "__fish_retriever_using_subcommand echo" -l cloud -d 'DICOMweb base URL of the cloud archive, e.g. https://cloud.example.org/dicom-web' -r
complete -c retriever -n "__fish_retriever_using_subcommand echo" -l user -d 'HTTP Basic user name (the password comes from RETRIEVER_PASSWORD, --password-file or the config file)' -r
complete -c retriever -n "__fish_retriever_using_subcommand echo" -l password-file -d 'File holding the HTTP Basic password (first line)' -r -F
complete -c retriever -n "__fish_retriever_using_subcommand echo" -l token-file -d 'File holding a Bearer token (first line)' -r -F
complete -c retriever -n "__fish_retriever_using_subcommand echo" -l ca-bundle -d 'Extra CA certificates (PEM) to trust for the cloud, besides the system\'s' -r -F
complete -c retriever -n "__fish_retriever_using_subcommand echo" -l client-cert -d 'Our client certificate (PEM) for a cloud that asks for one (mutual TLS); needs --client-key' -r -F
complete -c retriever -n "__fish_retriever_using_subcommand echo" -l client-key -d 'The private key (PEM, unencrypted) of --client-cert; a file only this account can read' -r -F
complete -c retriever -n "__fish_retriever_using_subcommand echo" -l to -d 'The DICOM destination, e.g. PACS@10.0.0.5:104' -r
complete -c retriever -n "__fish_retriever_using_subcommand echo" -l dest -d 'Only this destination of the config file\'s `destinations` (by name; repeat for several) [default: all]' -r
complete -c retriever -n "__fish_retriever_using_subcommand echo" -l to-ca -d 'CA certificates (PEM) to trust for the destination\'s TLS certificate, besides the system\'s' -r -F
complete -c retriever -n "__fish_retriever_using_subcommand echo" -l to-cert -d 'Our client certificate (PEM) for a destination that asks for one (with --to-key)' -r -F
complete -c retriever -n "__fish_retriever_using_subcommand echo" -l to-key -d 'The private key (PEM) of --to-cert' -r -F
complete -c retriever -n "__fish_retriever_using_subcommand echo" -l to-server-name -d 'The name the destination\'s TLS certificate must be for [default: the host of --to]' -r
complete -c retriever -n "__fish_retriever_using_subcommand echo" -l calling-ae -d 'Our AE title, as the destination sees it [default: RETRIEVER]' -r
complete -c retriever -n "__fish_retriever_using_subcommand echo" -l cache -d 'The cache directory [default: the platform\'s local cache folder]' -r -F
complete -c retriever -n "__fish_retriever_using_subcommand echo" -l jobs -d 'Parallel downloads from the cloud [default: 4]' -r
complete -c retriever -n "__fish_retriever_using_subcommand echo" -l connect-timeout -d 'Time allowed to connect to the cloud [default: 10s]' -r
complete -c retriever -n "__fish_retriever_using_subcommand echo" -l idle-timeout -d 'Time a transfer may go without receiving any data [default: 60s]' -r
complete -c retriever -n "__fish_retriever_using_subcommand echo" -l retries -d 'Retries after a transient failure (connection lost, 5xx, 429) [default: 5]' -r
complete -c retriever -n "__fish_retriever_using_subcommand echo" -l max-instance-size -d 'Largest single instance taken from the cloud, e.g. 512MiB, 8GiB; a larger one is refused [default: 4GiB]' -r
complete -c retriever -n "__fish_retriever_using_subcommand echo" -l log-file -d 'Append the log of `watch` to this file, one line per event, rotated at 10 MiB (FILE.1 to FILE.5 kept); for `service install`, the service\'s log [default: %ProgramData%\\retriever\\log\\NAME.log]' -r -F
complete -c retriever -n "__fish_retriever_using_subcommand echo" -l decompress-lossy -d 'Decompress lossy JPEG here when the destination does not take it compressed (otherwise the cloud is asked for it in a syntax the destination takes)'
complete -c retriever -n "__fish_retriever_using_subcommand echo" -l allow-insecure-http -d 'Allow plain, unencrypted http:// to a cloud that is not on this machine'
complete -c retriever -n "__fish_retriever_using_subcommand echo" -l to-tls -d 'DICOM TLS to the destination (--to); there is never a fallback to plain TCP'
complete -c retriever -n "__fish_retriever_using_subcommand echo" -s q -l quiet -d 'No progress bars, only errors on stderr'
complete -c retriever -n "__fish_retriever_using_subcommand echo" -s h -l help -d 'Print help'
complete -c retriever -n "__fish_retriever_using_subcommand config" -l priors -d 'How many prior studies of the same patient to fetch with each study [default: 3]' -r
complete -c retriever -n "__fish_retriever_using_subcommand config" -l prior-years -d 'How far back a prior may be, in years [default: 5]' -r
complete -c retriever -n "__fish_retriever_using_subcommand config" -l prior-modality -d 'Which modalities a prior may have [default: any]' -r -f -a "any\t'Any modality'
same\t'At least one modality in common with the current study'"
complete -c retriever -n "__fish_retriever_using_subcommand config" -l associations -d 'Associations opened in parallel to the destination (1 to 32) [default: 2]' -r
complete -c retriever -n "__fish_retriever_using_subcommand config" -l max-pdu -d 'Largest PDU we receive, and send if the destination takes it (4096 to 4194304) [default: 16384]' -r
complete -c retriever -n "__fish_retriever_using_subcommand config" -l dicom-connect-timeout -d 'Time allowed to open the TCP connection to the destination [default: 10s]' -r
complete -c retriever -n "__fish_retriever_using_subcommand config" -l acse-timeout -d 'Time allowed for the destination to answer an association or release request, and for the TLS handshake with --to-tls [default: 30s]' -r
complete -c retriever -n "__fish_retriever_using_subcommand config" -l dimse-timeout -d 'Time the destination may stay silent while an instance is sent, and the most its whole answer may take [default: 60s]' -r
complete -c retriever -n "__fish_retriever_using_subcommand config" -l store-retries -d 'Retries of an instance within one run, after "out of resources" or no answer (a study whose requests go unanswered twice in a row is given up), and of an association the destination is too busy to accept [default: 3]' -r
complete -c retriever -n "__fish_retriever_using_subcommand config" -l config -d 'JSON config file; flags beat environment, environment beats the file' -r -F
complete -c retriever -n "__fish_retriever_using_subcommand config" -l cloud -d 'DICOMweb base URL of the cloud archive, e.g. https://cloud.example.org/dicom-web' -r
complete -c retriever -n "__fish_retriever_using_subcommand config" -l user -d 'HTTP Basic user name (the password comes from RETRIEVER_PASSWORD, --password-file or the config file)' -r
complete -c retriever -n "__fish_retriever_using_subcommand config" -l password-file -d 'File holding the HTTP Basic password (first line)' -r -F
complete -c retriever -n "__fish_retriever_using_subcommand config" -l token-file -d 'File holding a Bearer token (first line)' -r -F
complete -c retriever -n "__fish_retriever_using_subcommand config" -l ca-bundle -d 'Extra CA certificates (PEM) to trust for the cloud, besides the system\'s' -r -F
complete -c retriever -n "__fish_retriever_using_subcommand config" -l client-cert -d 'Our client certificate (PEM) for a cloud that asks for one (mutual TLS); needs --client-key' -r -F
complete -c retriever -n "__fish_retriever_using_subcommand config" -l client-key -d 'The private key (PEM, unencrypted) of --client-cert; a file only this account can read' -r -F
complete -c retriever -n "__fish_retriever_using_subcommand config" -l to -d 'The DICOM destination, e.g. PACS@10.0.0.5:104' -r
complete -c retriever -n "__fish_retriever_using_subcommand config" -l dest -d 'Only this destination of the config file\'s `destinations` (by name; repeat for several) [default: all]' -r
complete -c retriever -n "__fish_retriever_using_subcommand config" -l to-ca -d 'CA certificates (PEM) to trust for the destination\'s TLS certificate, besides the system\'s' -r -F
complete -c retriever -n "__fish_retriever_using_subcommand config" -l to-cert -d 'Our client certificate (PEM) for a destination that asks for one (with --to-key)' -r -F
complete -c retriever -n "__fish_retriever_using_subcommand config" -l to-key -d 'The private key (PEM) of --to-cert' -r -F
complete -c retriever -n "__fish_retriever_using_subcommand config" -l to-server-name -d 'The name the destination\'s TLS certificate must be for [default: the host of --to]' -r
complete -c retriever -n "__fish_retriever_using_subcommand config" -l calling-ae -d 'Our AE title, as the destination sees it [default: RETRIEVER]' -r
complete -c retriever -n "__fish_retriever_using_subcommand config" -l cache -d 'The cache directory [default: the platform\'s local cache folder]' -r -F
complete -c retriever -n "__fish_retriever_using_subcommand config" -l jobs -d 'Parallel downloads from the cloud [default: 4]' -r
complete -c retriever -n "__fish_retriever_using_subcommand config" -l connect-timeout -d 'Time allowed to connect to the cloud [default: 10s]' -r
complete -c retriever -n "__fish_retriever_using_subcommand config" -l idle-timeout -d 'Time a transfer may go without receiving any data [default: 60s]' -r
complete -c retriever -n "__fish_retriever_using_subcommand config" -l retries -d 'Retries after a transient failure (connection lost, 5xx, 429) [default: 5]' -r
complete -c retriever -n "__fish_retriever_using_subcommand config" -l max-instance-size -d 'Largest single instance taken from the cloud, e.g. 512MiB, 8GiB; a larger one is refused [default: 4GiB]' -r
complete -c retriever -n "__fish_retriever_using_subcommand config" -l log-file -d 'Append the log of `watch` to this file, one line per event, rotated at 10 MiB (FILE.1 to FILE.5 kept); for `service install`, the service\'s log [default: %ProgramData%\\retriever\\log\\NAME.log]' -r -F
complete -c retriever -n "__fish_retriever_using_subcommand config" -l json -d 'One JSON object (setting -> value, source) instead of a table'
complete -c retriever -n "__fish_retriever_using_subcommand config" -l decompress-lossy -d 'Decompress lossy JPEG here when the destination does not take it compressed (otherwise the cloud is asked for it in a syntax the destination takes)'
complete -c retriever -n "__fish_retriever_using_subcommand config" -l allow-insecure-http -d 'Allow plain, unencrypted http:// to a cloud that is not on this machine'
complete -c retriever -n "__fish_retriever_using_subcommand config" -l to-tls -d 'DICOM TLS to the destination (--to); there is never a fallback to plain TCP'
complete -c retriever -n "__fish_retriever_using_subcommand config" -s q -l quiet -d 'No progress bars, only errors on stderr'
complete -c retriever -n "__fish_retriever_using_subcommand config" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c retriever -n "__fish_retriever_using_subcommand status" -l stale-after -d 'Call the router not working when no search of the cloud has worked for this long [default: 3 search intervals, at least 1m]' -r
complete -c retriever -n "__fish_retriever_using_subcommand status" -l config -d 'JSON config file; flags beat environment, environment beats the file' -r -F
complete -c retriever -n "__fish_retriever_using_subcommand status" -l cloud -d 'DICOMweb base URL of the cloud archive, e.g. https://cloud.example.org/dicom-web' -r
complete -c retriever -n "__fish_retriever_using_subcommand status" -l user -d 'HTTP Basic user name (the password comes from RETRIEVER_PASSWORD, --password-file or the config file)' -r
complete -c retriever -n "__fish_retriever_using_subcommand status" -l password-file -d 'File holding the HTTP Basic password (first line)' -r -F
complete -c retriever -n "__fish_retriever_using_subcommand status" -l token-file -d 'File holding a Bearer token (first line)' -r -F
complete -c retriever -n "__fish_retriever_using_subcommand status" -l ca-bundle -d 'Extra CA certificates (PEM) to trust for the cloud, besides the system\'s' -r -F
complete -c retriever -n "__fish_retriever_using_subcommand status" -l client-cert -d 'Our client certificate (PEM) for a cloud that asks for one (mutual TLS); needs --client-key' -r -F
complete -c retriever -n "__fish_retriever_using_subcommand status" -l client-key -d 'The private key (PEM, unencrypted) of --client-cert; a file only this account can read' -r -F
complete -c retriever -n "__fish_retriever_using_subcommand status" -l to -d 'The DICOM destination, e.g. PACS@10.0.0.5:104' -r
complete -c retriever -n "__fish_retriever_using_subcommand status" -l dest -d 'Only this destination of the config file\'s `destinations` (by name; repeat for several) [default: all]' -r
complete -c retriever -n "__fish_retriever_using_subcommand status" -l to-ca -d 'CA certificates (PEM) to trust for the destination\'s TLS certificate, besides the system\'s' -r -F
complete -c retriever -n "__fish_retriever_using_subcommand status" -l to-cert -d 'Our client certificate (PEM) for a destination that asks for one (with --to-key)' -r -F
complete -c retriever -n "__fish_retriever_using_subcommand status" -l to-key -d 'The private key (PEM) of --to-cert' -r -F
complete -c retriever -n "__fish_retriever_using_subcommand status" -l to-server-name -d 'The name the destination\'s TLS certificate must be for [default: the host of --to]' -r
complete -c retriever -n "__fish_retriever_using_subcommand status" -l calling-ae -d 'Our AE title, as the destination sees it [default: RETRIEVER]' -r
complete -c retriever -n "__fish_retriever_using_subcommand status" -l cache -d 'The cache directory [default: the platform\'s local cache folder]' -r -F
complete -c retriever -n "__fish_retriever_using_subcommand status" -l jobs -d 'Parallel downloads from the cloud [default: 4]' -r
complete -c retriever -n "__fish_retriever_using_subcommand status" -l connect-timeout -d 'Time allowed to connect to the cloud [default: 10s]' -r
complete -c retriever -n "__fish_retriever_using_subcommand status" -l idle-timeout -d 'Time a transfer may go without receiving any data [default: 60s]' -r
complete -c retriever -n "__fish_retriever_using_subcommand status" -l retries -d 'Retries after a transient failure (connection lost, 5xx, 429) [default: 5]' -r
complete -c retriever -n "__fish_retriever_using_subcommand status" -l max-instance-size -d 'Largest single instance taken from the cloud, e.g. 512MiB, 8GiB; a larger one is refused [default: 4GiB]' -r
complete -c retriever -n "__fish_retriever_using_subcommand status" -l log-file -d 'Append the log of `watch` to this file, one line per event, rotated at 10 MiB (FILE.1 to FILE.5 kept); for `service install`, the service\'s log [default: %ProgramData%\\retriever\\log\\NAME.log]' -r -F
complete -c retriever -n "__fish_retriever_using_subcommand status" -l json -d 'The status file and the verdict, one JSON object per watch, instead of text'
complete -c retriever -n "__fish_retriever_using_subcommand status" -l allow-insecure-http -d 'Allow plain, unencrypted http:// to a cloud that is not on this machine'
complete -c retriever -n "__fish_retriever_using_subcommand status" -l to-tls -d 'DICOM TLS to the destination (--to); there is never a fallback to plain TCP'
complete -c retriever -n "__fish_retriever_using_subcommand status" -s q -l quiet -d 'No progress bars, only errors on stderr'
complete -c retriever -n "__fish_retriever_using_subcommand status" -s h -l help -d 'Print help'
complete -c retriever -n "__fish_retriever_using_subcommand service; and not __fish_seen_subcommand_from install uninstall start stop run help" -l config -d 'JSON config file; flags beat environment, environment beats the file' -r -F
complete -c retriever -n "__fish_retriever_using_subcommand service; and not __fish_seen_subcommand_from install uninstall start stop run help" -l cloud -d 'DICOMweb base URL of the cloud archive, e.g. https://cloud.example.org/dicom-web' -r
complete -c retriever -n "__fish_retriever_using_subcommand service; and not __fish_seen_subcommand_from install uninstall start stop run help" -l user -d 'HTTP Basic user name (the password comes from RETRIEVER_PASSWORD, --password-file or the config file)' -r
complete -c retriever -n "__fish_retriever_using_subcommand service; and not __fish_seen_subcommand_from install uninstall start stop run help" -l password-file -d 'File holding the HTTP Basic password (first line)' -r -F
complete -c retriever -n "__fish_retriever_using_subcommand service; and not __fish_seen_subcommand_from install uninstall start stop run help" -l token-file -d 'File holding a Bearer token (first line)' -r -F
complete -c retriever -n "__fish_retriever_using_subcommand service; and not __fish_seen_subcommand_from install uninstall start stop run help" -l ca-bundle -d 'Extra CA certificates (PEM) to trust for the cloud, besides the system\'s' -r -F
complete -c retriever -n "__fish_retriever_using_subcommand service; and not __fish_seen_subcommand_from install uninstall start stop run help" -l client-cert -d 'Our client certificate (PEM) for a cloud that asks for one (mutual TLS); needs --client-key' -r -F
complete -c retriever -n "__fish_retriever_using_subcommand service; and not __fish_seen_subcommand_from install uninstall start stop run help" -l client-key -d 'The private key (PEM, unencrypted) of --client-cert; a file only this account can read' -r -F
complete -c retriever -n "__fish_retriever_using_subcommand service; and not __fish_seen_subcommand_from install uninstall start stop run help" -l to -d 'The DICOM destination, e.g. PACS@10.0.0.5:104' -r
complete -c retriever -n "__fish_retriever_using_subcommand service; and not __fish_seen_subcommand_from install uninstall start stop run help" -l dest -d 'Only this destination of the config file\'s `destinations` (by name; repeat for several) [default: all]' -r
complete -c retriever -n "__fish_retriever_using_subcommand service; and not __fish_seen_subcommand_from install uninstall start stop run help" -l to-ca -d 'CA certificates (PEM) to trust for the destination\'s TLS certificate, besides the system\'s' -r -F
complete -c retriever -n "__fish_retriever_using_subcommand service; and not __fish_seen_subcommand_from install uninstall start stop run help" -l to-cert -d 'Our client certificate (PEM) for a destination that asks for one (with --to-key)' -r -F
complete -c retriever -n "__fish_retriever_using_subcommand service; and not __fish_seen_subcommand_from install uninstall start stop run help" -l to-key -d 'The private key (PEM) of --to-cert' -r -F
complete -c retriever -n "__fish_retriever_using_subcommand service; and not __fish_seen_subcommand_from install uninstall start stop run help" -l to-server-name -d 'The name the destination\'s TLS certificate must be for [default: the host of --to]' -r
complete -c retriever -n "__fish_retriever_using_subcommand service; and not __fish_seen_subcommand_from install uninstall start stop run help" -l calling-ae -d 'Our AE title, as the destination sees it [default: RETRIEVER]' -r
complete -c retriever -n "__fish_retriever_using_subcommand service; and not __fish_seen_subcommand_from install uninstall start stop run help" -l cache -d 'The cache directory [default: the platform\'s local cache folder]' -r -F
complete -c retriever -n "__fish_retriever_using_subcommand service; and not __fish_seen_subcommand_from install uninstall start stop run help" -l jobs -d 'Parallel downloads from the cloud [default: 4]' -r
complete -c retriever -n "__fish_retriever_using_subcommand service; and not __fish_seen_subcommand_from install uninstall start stop run help" -l connect-timeout -d 'Time allowed to connect to the cloud [default: 10s]' -r
complete -c retriever -n "__fish_retriever_using_subcommand service; and not __fish_seen_subcommand_from install uninstall start stop run help" -l idle-timeout -d 'Time a transfer may go without receiving any data [default: 60s]' -r
complete -c retriever -n "__fish_retriever_using_subcommand service; and not __fish_seen_subcommand_from install uninstall start stop run help" -l retries -d 'Retries after a transient failure (connection lost, 5xx, 429) [default: 5]' -r
complete -c retriever -n "__fish_retriever_using_subcommand service; and not __fish_seen_subcommand_from install uninstall start stop run help" -l max-instance-size -d 'Largest single instance taken from the cloud, e.g. 512MiB, 8GiB; a larger one is refused [default: 4GiB]' -r
complete -c retriever -n "__fish_retriever_using_subcommand service; and not __fish_seen_subcommand_from install uninstall start stop run help" -l log-file -d 'Append the log of `watch` to this file, one line per event, rotated at 10 MiB (FILE.1 to FILE.5 kept); for `service install`, the service\'s log [default: %ProgramData%\\retriever\\log\\NAME.log]' -r -F
complete -c retriever -n "__fish_retriever_using_subcommand service; and not __fish_seen_subcommand_from install uninstall start stop run help" -l allow-insecure-http -d 'Allow plain, unencrypted http:// to a cloud that is not on this machine'
complete -c retriever -n "__fish_retriever_using_subcommand service; and not __fish_seen_subcommand_from install uninstall start stop run help" -l to-tls -d 'DICOM TLS to the destination (--to); there is never a fallback to plain TCP'
complete -c retriever -n "__fish_retriever_using_subcommand service; and not __fish_seen_subcommand_from install uninstall start stop run help" -s q -l quiet -d 'No progress bars, only errors on stderr'
complete -c retriever -n "__fish_retriever_using_subcommand service; and not __fish_seen_subcommand_from install uninstall start stop run help" -s h -l help -d 'Print help'
complete -c retriever -n "__fish_retriever_using_subcommand service; and not __fish_seen_subcommand_from install uninstall start stop run help" -f -a "install" -d 'Register the service: starts with Windows (delayed), restarted after a failure; --config and --cache are passed to it [default: %ProgramData%\\retriever\\config.json and ...\\cache]'
complete -c retriever -n "__fish_retriever_using_subcommand service; and not __fish_seen_subcommand_from install uninstall start stop run help" -f -a "uninstall" -d 'Stop the service if it runs, and remove it'
complete -c retriever -n "__fish_retriever_using_subcommand service; and not __fish_seen_subcommand_from install uninstall start stop run help" -f -a "start" -d 'Start the service'
complete -c retriever -n "__fish_retriever_using_subcommand service; and not __fish_seen_subcommand_from install uninstall start stop run help" -f -a "stop" -d 'Stop the service; it finishes or abandons what is in flight, as after Ctrl-C'
complete -c retriever -n "__fish_retriever_using_subcommand service; and not __fish_seen_subcommand_from install uninstall start stop run help" -f -a "run" -d 'The service itself, as the Service Control Manager starts it (not run by hand: use `watch`)'
complete -c retriever -n "__fish_retriever_using_subcommand service; and not __fish_seen_subcommand_from install uninstall start stop run help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c retriever -n "__fish_retriever_using_subcommand service; and __fish_seen_subcommand_from install" -l name -d 'The service\'s name' -r
complete -c retriever -n "__fish_retriever_using_subcommand service; and __fish_seen_subcommand_from install" -l account -d 'The account the service runs as: LocalService, NetworkService, LocalSystem, a virtual account (\\"NT SERVICE\\\\retriever\\"), or a user whose password is in RETRIEVER_SERVICE_PASSWORD [default: LocalService]' -r
complete -c retriever -n "__fish_retriever_using_subcommand service; and __fish_seen_subcommand_from install" -l config -d 'JSON config file; flags beat environment, environment beats the file' -r -F
complete -c retriever -n "__fish_retriever_using_subcommand service; and __fish_seen_subcommand_from install" -l cloud -d 'DICOMweb base URL of the cloud archive, e.g. https://cloud.example.org/dicom-web' -r
complete -c retriever -n "__fish_retriever_using_subcommand service; and __fish_seen_subcommand_from install" -l user -d 'HTTP Basic user name (the password comes from RETRIEVER_PASSWORD, --password-file or the config file)' -r
complete -c retriever -n "__fish_retriever_using_subcommand service; and __fish_seen_subcommand_from install" -l password-file -d 'File holding the HTTP Basic password (first line)' -r -F
complete -c retriever -n "__fish_retriever_using_subcommand service; and __fish_seen_subcommand_from install" -l token-file -d 'File holding a Bearer token (first line)' -r -F
complete -c retriever -n "__fish_retriever_using_subcommand service; and __fish_seen_subcommand_from install" -l ca-bundle -d 'Extra CA certificates (PEM) to trust for the cloud, besides the system\'s' -r -F
complete -c retriever -n "__fish_retriever_using_subcommand service; and __fish_seen_subcommand_from install" -l client-cert -d 'Our client certificate (PEM) for a cloud that asks for one (mutual TLS); needs --client-key' -r -F
complete -c retriever -n "__fish_retriever_using_subcommand service; and __fish_seen_subcommand_from install" -l client-key -d 'The private key (PEM, unencrypted) of --client-cert; a file only this account can read' -r -F
complete -c retriever -n "__fish_retriever_using_subcommand service; and __fish_seen_subcommand_from install" -l to -d 'The DICOM destination, e.g. PACS@10.0.0.5:104' -r
complete -c retriever -n "__fish_retriever_using_subcommand service; and __fish_seen_subcommand_from install" -l dest -d 'Only this destination of the config file\'s `destinations` (by name; repeat for several) [default: all]' -r
complete -c retriever -n "__fish_retriever_using_subcommand service; and __fish_seen_subcommand_from install" -l to-ca -d 'CA certificates (PEM) to trust for the destination\'s TLS certificate, besides the system\'s' -r -F
complete -c retriever -n "__fish_retriever_using_subcommand service; and __fish_seen_subcommand_from install" -l to-cert -d 'Our client certificate (PEM) for a destination that asks for one (with --to-key)' -r -F
complete -c retriever -n "__fish_retriever_using_subcommand service; and __fish_seen_subcommand_from install" -l to-key -d 'The private key (PEM) of --to-cert' -r -F
complete -c retriever -n "__fish_retriever_using_subcommand service; and __fish_seen_subcommand_from install" -l to-server-name -d 'The name the destination\'s TLS certificate must be for [default: the host of --to]' -r
complete -c retriever -n "__fish_retriever_using_subcommand service; and __fish_seen_subcommand_from install" -l calling-ae -d 'Our AE title, as the destination sees it [default: RETRIEVER]' -r
complete -c retriever -n "__fish_retriever_using_subcommand service; and __fish_seen_subcommand_from install" -l cache -d 'The cache directory [default: the platform\'s local cache folder]' -r -F
complete -c retriever -n "__fish_retriever_using_subcommand service; and __fish_seen_subcommand_from install" -l jobs -d 'Parallel downloads from the cloud [default: 4]' -r
complete -c retriever -n "__fish_retriever_using_subcommand service; and __fish_seen_subcommand_from install" -l connect-timeout -d 'Time allowed to connect to the cloud [default: 10s]' -r
complete -c retriever -n "__fish_retriever_using_subcommand service; and __fish_seen_subcommand_from install" -l idle-timeout -d 'Time a transfer may go without receiving any data [default: 60s]' -r
complete -c retriever -n "__fish_retriever_using_subcommand service; and __fish_seen_subcommand_from install" -l retries -d 'Retries after a transient failure (connection lost, 5xx, 429) [default: 5]' -r
complete -c retriever -n "__fish_retriever_using_subcommand service; and __fish_seen_subcommand_from install" -l max-instance-size -d 'Largest single instance taken from the cloud, e.g. 512MiB, 8GiB; a larger one is refused [default: 4GiB]' -r
complete -c retriever -n "__fish_retriever_using_subcommand service; and __fish_seen_subcommand_from install" -l log-file -d 'Append the log of `watch` to this file, one line per event, rotated at 10 MiB (FILE.1 to FILE.5 kept); for `service install`, the service\'s log [default: %ProgramData%\\retriever\\log\\NAME.log]' -r -F
complete -c retriever -n "__fish_retriever_using_subcommand service; and __fish_seen_subcommand_from install" -l allow-insecure-http -d 'Allow plain, unencrypted http:// to a cloud that is not on this machine'
complete -c retriever -n "__fish_retriever_using_subcommand service; and __fish_seen_subcommand_from install" -l to-tls -d 'DICOM TLS to the destination (--to); there is never a fallback to plain TCP'
complete -c retriever -n "__fish_retriever_using_subcommand service; and __fish_seen_subcommand_from install" -s q -l quiet -d 'No progress bars, only errors on stderr'
complete -c retriever -n "__fish_retriever_using_subcommand service; and __fish_seen_subcommand_from install" -s h -l help -d 'Print help'
complete -c retriever -n "__fish_retriever_using_subcommand service; and __fish_seen_subcommand_from uninstall" -l name -d 'The service\'s name' -r
complete -c retriever -n "__fish_retriever_using_subcommand service; and __fish_seen_subcommand_from uninstall" -l config -d 'JSON config file; flags beat environment, environment beats the file' -r -F
complete -c retriever -n "__fish_retriever_using_subcommand service; and __fish_seen_subcommand_from uninstall" -l cloud -d 'DICOMweb base URL of the cloud archive, e.g. https://cloud.example.org/dicom-web' -r
complete -c retriever -n "__fish_retriever_using_subcommand service; and __fish_seen_subcommand_from uninstall" -l user -d 'HTTP Basic user name (the password comes from RETRIEVER_PASSWORD, --password-file or the config file)' -r
complete -c retriever -n "__fish_retriever_using_subcommand service; and __fish_seen_subcommand_from uninstall" -l password-file -d 'File holding the HTTP Basic password (first line)' -r -F
complete -c retriever -n "__fish_retriever_using_subcommand service; and __fish_seen_subcommand_from uninstall" -l token-file -d 'File holding a Bearer token (first line)' -r -F
complete -c retriever -n "__fish_retriever_using_subcommand service; and __fish_seen_subcommand_from uninstall" -l ca-bundle -d 'Extra CA certificates (PEM) to trust for the cloud, besides the system\'s' -r -F
complete -c retriever -n "__fish_retriever_using_subcommand service; and __fish_seen_subcommand_from uninstall" -l client-cert -d 'Our client certificate (PEM) for a cloud that asks for one (mutual TLS); needs --client-key' -r -F
complete -c retriever -n "__fish_retriever_using_subcommand service; and __fish_seen_subcommand_from uninstall" -l client-key -d 'The private key (PEM, unencrypted) of --client-cert; a file only this account can read' -r -F
complete -c retriever -n "__fish_retriever_using_subcommand service; and __fish_seen_subcommand_from uninstall" -l to -d 'The DICOM destination, e.g. PACS@10.0.0.5:104' -r
complete -c retriever -n "__fish_retriever_using_subcommand service; and __fish_seen_subcommand_from uninstall" -l dest -d 'Only this destination of the config file\'s `destinations` (by name; repeat for several) [default: all]' -r
complete -c retriever -n "__fish_retriever_using_subcommand service; and __fish_seen_subcommand_from uninstall" -l to-ca -d 'CA certificates (PEM) to trust for the destination\'s TLS certificate, besides the system\'s' -r -F
complete -c retriever -n "__fish_retriever_using_subcommand service; and __fish_seen_subcommand_from uninstall" -l to-cert -d 'Our client certificate (PEM) for a destination that asks for one (with --to-key)' -r -F
complete -c retriever -n "__fish_retriever_using_subcommand service; and __fish_seen_subcommand_from uninstall" -l to-key -d 'The private key (PEM) of --to-cert' -r -F
complete -c retriever -n "__fish_retriever_using_subcommand service; and __fish_seen_subcommand_from uninstall" -l to-server-name -d 'The name the destination\'s TLS certificate must be for [default: the host of --to]' -r
complete -c retriever -n "__fish_retriever_using_subcommand service; and __fish_seen_subcommand_from uninstall" -l calling-ae -d 'Our AE title, as the destination sees it [default: RETRIEVER]' -r
complete -c retriever -n "__fish_retriever_using_subcommand service; and __fish_seen_subcommand_from uninstall" -l cache -d 'The cache directory [default: the platform\'s local cache folder]' -r -F
complete -c retriever -n "__fish_retriever_using_subcommand service; and __fish_seen_subcommand_from uninstall" -l jobs -d 'Parallel downloads from the cloud [default: 4]' -r
complete -c retriever -n "__fish_retriever_using_subcommand service; and __fish_seen_subcommand_from uninstall" -l connect-timeout -d 'Time allowed to connect to the cloud [default: 10s]' -r
complete -c retriever -n "__fish_retriever_using_subcommand service; and __fish_seen_subcommand_from uninstall" -l idle-timeout -d 'Time a transfer may go without receiving any data [default: 60s]' -r
complete -c retriever -n "__fish_retriever_using_subcommand service; and __fish_seen_subcommand_from uninstall" -l retries -d 'Retries after a transient failure (connection lost, 5xx, 429) [default: 5]' -r
complete -c retriever -n "__fish_retriever_using_subcommand service; and __fish_seen_subcommand_from uninstall" -l max-instance-size -d 'Largest single instance taken from the cloud, e.g. 512MiB, 8GiB; a larger one is refused [default: 4GiB]' -r
complete -c retriever -n "__fish_retriever_using_subcommand service; and __fish_seen_subcommand_from uninstall" -l log-file -d 'Append the log of `watch` to this file, one line per event, rotated at 10 MiB (FILE.1 to FILE.5 kept); for `service install`, the service\'s log [default: %ProgramData%\\retriever\\log\\NAME.log]' -r -F
complete -c retriever -n "__fish_retriever_using_subcommand service; and __fish_seen_subcommand_from uninstall" -l allow-insecure-http -d 'Allow plain, unencrypted http:// to a cloud that is not on this machine'
complete -c retriever -n "__fish_retriever_using_subcommand service; and __fish_seen_subcommand_from uninstall" -l to-tls -d 'DICOM TLS to the destination (--to); there is never a fallback to plain TCP'
complete -c retriever -n "__fish_retriever_using_subcommand service; and __fish_seen_subcommand_from uninstall" -s q -l quiet -d 'No progress bars, only errors on stderr'
complete -c retriever -n "__fish_retriever_using_subcommand service; and __fish_seen_subcommand_from uninstall" -s h -l help -d 'Print help'
complete -c retriever -n "__fish_retriever_using_subcommand service; and __fish_seen_subcommand_from start" -l name -d 'The service\'s name' -r
complete -c retriever -n "__fish_retriever_using_subcommand service; and __fish_seen_subcommand_from start" -l config -d 'JSON config file; flags beat environment, environment beats the file' -r -F
complete -c retriever -n "__fish_retriever_using_subcommand service; and __fish_seen_subcommand_from start" -l cloud -d 'DICOMweb base URL of the cloud archive, e.g. https://cloud.example.org/dicom-web' -r
complete -c retriever -n "__fish_retriever_using_subcommand service; and __fish_seen_subcommand_from start" -l user -d 'HTTP Basic user name (the password comes from RETRIEVER_PASSWORD, --password-file or the config file)' -r
complete -c retriever -n "__fish_retriever_using_subcommand service; and __fish_seen_subcommand_from start" -l password-file -d 'File holding the HTTP Basic password (first line)' -r -F
complete -c retriever -n "__fish_retriever_using_subcommand service; and __fish_seen_subcommand_from start" -l token-file -d 'File holding a Bearer token (first line)' -r -F
complete -c retriever -n "__fish_retriever_using_subcommand service; and __fish_seen_subcommand_from start" -l ca-bundle -d 'Extra CA certificates (PEM) to trust for the cloud, besides the system\'s' -r -F
complete -c retriever -n "__fish_retriever_using_subcommand service; and __fish_seen_subcommand_from start" -l client-cert -d 'Our client certificate (PEM) for a cloud that asks for one (mutual TLS); needs --client-key' -r -F
complete -c retriever -n "__fish_retriever_using_subcommand service; and __fish_seen_subcommand_from start" -l client-key -d 'The private key (PEM, unencrypted) of --client-cert; a file only this account can read' -r -F
complete -c retriever -n "__fish_retriever_using_subcommand service; and __fish_seen_subcommand_from start" -l to -d 'The DICOM destination, e.g. PACS@10.0.0.5:104' -r
complete -c retriever -n "__fish_retriever_using_subcommand service; and __fish_seen_subcommand_from start" -l dest -d 'Only this destination of the config file\'s `destinations` (by name; repeat for several) [default: all]' -r
complete -c retriever -n "__fish_retriever_using_subcommand service; and __fish_seen_subcommand_from start" -l to-ca -d 'CA certificates (PEM) to trust for the destination\'s TLS certificate, besides the system\'s' -r -F
complete -c retriever -n "__fish_retriever_using_subcommand service; and __fish_seen_subcommand_from start" -l to-cert -d 'Our client certificate (PEM) for a destination that asks for one (with --to-key)' -r -F
complete -c retriever -n "__fish_retriever_using_subcommand service; and __fish_seen_subcommand_from start" -l to-key -d 'The private key (PEM) of --to-cert' -r -F
complete -c retriever -n "__fish_retriever_using_subcommand service; and __fish_seen_subcommand_from start" -l to-server-name -d 'The name the destination\'s TLS certificate must be for [default: the host of --to]' -r
complete -c retriever -n "__fish_retriever_using_subcommand service; and __fish_seen_subcommand_from start" -l calling-ae -d 'Our AE title, as the destination sees it [default: RETRIEVER]' -r
complete -c retriever -n "__fish_retriever_using_subcommand service; and __fish_seen_subcommand_from start" -l cache -d 'The cache directory [default: the platform\'s local cache folder]' -r -F
complete -c retriever -n "__fish_retriever_using_subcommand service; and __fish_seen_subcommand_from start" -l jobs -d 'Parallel downloads from the cloud [default: 4]' -r
complete -c retriever -n "__fish_retriever_using_subcommand service; and __fish_seen_subcommand_from start" -l connect-timeout -d 'Time allowed to connect to the cloud [default: 10s]' -r
complete -c retriever -n "__fish_retriever_using_subcommand service; and __fish_seen_subcommand_from start" -l idle-timeout -d 'Time a transfer may go without receiving any data [default: 60s]' -r
complete -c retriever -n "__fish_retriever_using_subcommand service; and __fish_seen_subcommand_from start" -l retries -d 'Retries after a transient failure (connection lost, 5xx, 429) [default: 5]' -r
complete -c retriever -n "__fish_retriever_using_subcommand service; and __fish_seen_subcommand_from start" -l max-instance-size -d 'Largest single instance taken from the cloud, e.g. 512MiB, 8GiB; a larger one is refused [default: 4GiB]' -r
complete -c retriever -n "__fish_retriever_using_subcommand service; and __fish_seen_subcommand_from start" -l log-file -d 'Append the log of `watch` to this file, one line per event, rotated at 10 MiB (FILE.1 to FILE.5 kept); for `service install`, the service\'s log [default: %ProgramData%\\retriever\\log\\NAME.log]' -r -F
complete -c retriever -n "__fish_retriever_using_subcommand service; and __fish_seen_subcommand_from start" -l allow-insecure-http -d 'Allow plain, unencrypted http:// to a cloud that is not on this machine'
complete -c retriever -n "__fish_retriever_using_subcommand service; and __fish_seen_subcommand_from start" -l to-tls -d 'DICOM TLS to the destination (--to); there is never a fallback to plain TCP'
complete -c retriever -n "__fish_retriever_using_subcommand service; and __fish_seen_subcommand_from start" -s q -l quiet -d 'No progress bars, only errors on stderr'
complete -c retriever -n "__fish_retriever_using_subcommand service; and __fish_seen_subcommand_from start" -s h -l help -d 'Print help'
complete -c retriever -n "__fish_retriever_using_subcommand service; and __fish_seen_subcommand_from stop" -l name -d 'The service\'s name' -r
complete -c retriever -n "__fish_retriever_using_subcommand service; and __fish_seen_subcommand_from stop" -l config -d 'JSON config file; flags beat environment, environment beats the file' -r -F
complete -c retriever -n "__fish_retriever_using_subcommand service; and __fish_seen_subcommand_from stop" -l cloud -d 'DICOMweb base URL of the cloud archive, e.g. https://cloud.example.org/dicom-web' -r
complete -c retriever -n "__fish_retriever_using_subcommand service; and __fish_seen_subcommand_from stop" -l user -d 'HTTP Basic user name (the password comes from RETRIEVER_PASSWORD, --password-file or the config file)' -r
complete -c retriever -n "__fish_retriever_using_subcommand service; and __fish_seen_subcommand_from stop" -l password-file -d 'File holding the HTTP Basic password (first line)' -r -F
complete -c retriever -n "__fish_retriever_using_subcommand service; and __fish_seen_subcommand_from stop" -l token-file -d 'File holding a Bearer token (first line)' -r -F
complete -c retriever -n "__fish_retriever_using_subcommand service; and __fish_seen_subcommand_from stop" -l ca-bundle -d 'Extra CA certificates (PEM) to trust for the cloud, besides the system\'s' -r -F
complete -c retriever -n "__fish_retriever_using_subcommand service; and __fish_seen_subcommand_from stop" -l client-cert -d 'Our client certificate (PEM) for a cloud that asks for one (mutual TLS); needs --client-key' -r -F
complete -c retriever -n "__fish_retriever_using_subcommand service; and __fish_seen_subcommand_from stop" -l client-key -d 'The private key (PEM, unencrypted) of --client-cert; a file only this account can read' -r -F
complete -c retriever -n "__fish_retriever_using_subcommand service; and __fish_seen_subcommand_from stop" -l to -d 'The DICOM destination, e.g. PACS@10.0.0.5:104' -r
complete -c retriever -n "__fish_retriever_using_subcommand service; and __fish_seen_subcommand_from stop" -l dest -d 'Only this destination of the config file\'s `destinations` (by name; repeat for several) [default: all]' -r
complete -c retriever -n "__fish_retriever_using_subcommand service; and __fish_seen_subcommand_from stop" -l to-ca -d 'CA certificates (PEM) to trust for the destination\'s TLS certificate, besides the system\'s' -r -F
complete -c retriever -n "__fish_retriever_using_subcommand service; and __fish_seen_subcommand_from stop" -l to-cert -d 'Our client certificate (PEM) for a destination that asks for one (with --to-key)' -r -F
complete -c retriever -n "__fish_retriever_using_subcommand service; and __fish_seen_subcommand_from stop" -l to-key -d 'The private key (PEM) of --to-cert' -r -F
complete -c retriever -n "__fish_retriever_using_subcommand service; and __fish_seen_subcommand_from stop" -l to-server-name -d 'The name the destination\'s TLS certificate must be for [default: the host of --to]' -r
complete -c retriever -n "__fish_retriever_using_subcommand service; and __fish_seen_subcommand_from stop" -l calling-ae -d 'Our AE title, as the destination sees it [default: RETRIEVER]' -r
complete -c retriever -n "__fish_retriever_using_subcommand service; and __fish_seen_subcommand_from stop" -l cache -d 'The cache directory [default: the platform\'s local cache folder]' -r -F
complete -c retriever -n "__fish_retriever_using_subcommand service; and __fish_seen_subcommand_from stop" -l jobs -d 'Parallel downloads from the cloud [default: 4]' -r
complete -c retriever -n "__fish_retriever_using_subcommand service; and __fish_seen_subcommand_from stop" -l connect-timeout -d 'Time allowed to connect to the cloud [default: 10s]' -r
complete -c retriever -n "__fish_retriever_using_subcommand service; and __fish_seen_subcommand_from stop" -l idle-timeout -d 'Time a transfer may go without receiving any data [default: 60s]' -r
complete -c retriever -n "__fish_retriever_using_subcommand service; and __fish_seen_subcommand_from stop" -l retries -d 'Retries after a transient failure (connection lost, 5xx, 429) [default: 5]' -r
complete -c retriever -n "__fish_retriever_using_subcommand service; and __fish_seen_subcommand_from stop" -l max-instance-size -d 'Largest single instance taken from the cloud, e.g. 512MiB, 8GiB; a larger one is refused [default: 4GiB]' -r
complete -c retriever -n "__fish_retriever_using_subcommand service; and __fish_seen_subcommand_from stop" -l log-file -d 'Append the log of `watch` to this file, one line per event, rotated at 10 MiB (FILE.1 to FILE.5 kept); for `service install`, the service\'s log [default: %ProgramData%\\retriever\\log\\NAME.log]' -r -F
complete -c retriever -n "__fish_retriever_using_subcommand service; and __fish_seen_subcommand_from stop" -l allow-insecure-http -d 'Allow plain, unencrypted http:// to a cloud that is not on this machine'
complete -c retriever -n "__fish_retriever_using_subcommand service; and __fish_seen_subcommand_from stop" -l to-tls -d 'DICOM TLS to the destination (--to); there is never a fallback to plain TCP'
complete -c retriever -n "__fish_retriever_using_subcommand service; and __fish_seen_subcommand_from stop" -s q -l quiet -d 'No progress bars, only errors on stderr'
complete -c retriever -n "__fish_retriever_using_subcommand service; and __fish_seen_subcommand_from stop" -s h -l help -d 'Print help'
complete -c retriever -n "__fish_retriever_using_subcommand service; and __fish_seen_subcommand_from run" -l name -d 'The service\'s name' -r
complete -c retriever -n "__fish_retriever_using_subcommand service; and __fish_seen_subcommand_from run" -l config -d 'JSON config file; flags beat environment, environment beats the file' -r -F
complete -c retriever -n "__fish_retriever_using_subcommand service; and __fish_seen_subcommand_from run" -l cloud -d 'DICOMweb base URL of the cloud archive, e.g. https://cloud.example.org/dicom-web' -r
complete -c retriever -n "__fish_retriever_using_subcommand service; and __fish_seen_subcommand_from run" -l user -d 'HTTP Basic user name (the password comes from RETRIEVER_PASSWORD, --password-file or the config file)' -r
complete -c retriever -n "__fish_retriever_using_subcommand service; and __fish_seen_subcommand_from run" -l password-file -d 'File holding the HTTP Basic password (first line)' -r -F
complete -c retriever -n "__fish_retriever_using_subcommand service; and __fish_seen_subcommand_from run" -l token-file -d 'File holding a Bearer token (first line)' -r -F
complete -c retriever -n "__fish_retriever_using_subcommand service; and __fish_seen_subcommand_from run" -l ca-bundle -d 'Extra CA certificates (PEM) to trust for the cloud, besides the system\'s' -r -F
complete -c retriever -n "__fish_retriever_using_subcommand service; and __fish_seen_subcommand_from run" -l client-cert -d 'Our client certificate (PEM) for a cloud that asks for one (mutual TLS); needs --client-key' -r -F
complete -c retriever -n "__fish_retriever_using_subcommand service; and __fish_seen_subcommand_from run" -l client-key -d 'The private key (PEM, unencrypted) of --client-cert; a file only this account can read' -r -F
complete -c retriever -n "__fish_retriever_using_subcommand service; and __fish_seen_subcommand_from run" -l to -d 'The DICOM destination, e.g. PACS@10.0.0.5:104' -r
complete -c retriever -n "__fish_retriever_using_subcommand service; and __fish_seen_subcommand_from run" -l dest -d 'Only this destination of the config file\'s `destinations` (by name; repeat for several) [default: all]' -r
complete -c retriever -n "__fish_retriever_using_subcommand service; and __fish_seen_subcommand_from run" -l to-ca -d 'CA certificates (PEM) to trust for the destination\'s TLS certificate, besides the system\'s' -r -F
complete -c retriever -n "__fish_retriever_using_subcommand service; and __fish_seen_subcommand_from run" -l to-cert -d 'Our client certificate (PEM) for a destination that asks for one (with --to-key)' -r -F
complete -c retriever -n "__fish_retriever_using_subcommand service; and __fish_seen_subcommand_from run" -l to-key -d 'The private key (PEM) of --to-cert' -r -F
complete -c retriever -n "__fish_retriever_using_subcommand service; and __fish_seen_subcommand_from run" -l to-server-name -d 'The name the destination\'s TLS certificate must be for [default: the host of --to]' -r
complete -c retriever -n "__fish_retriever_using_subcommand service; and __fish_seen_subcommand_from run" -l calling-ae -d 'Our AE title, as the destination sees it [default: RETRIEVER]' -r
complete -c retriever -n "__fish_retriever_using_subcommand service; and __fish_seen_subcommand_from run" -l cache -d 'The cache directory [default: the platform\'s local cache folder]' -r -F
complete -c retriever -n "__fish_retriever_using_subcommand service; and __fish_seen_subcommand_from run" -l jobs -d 'Parallel downloads from the cloud [default: 4]' -r
complete -c retriever -n "__fish_retriever_using_subcommand service; and __fish_seen_subcommand_from run" -l connect-timeout -d 'Time allowed to connect to the cloud [default: 10s]' -r
complete -c retriever -n "__fish_retriever_using_subcommand service; and __fish_seen_subcommand_from run" -l idle-timeout -d 'Time a transfer may go without receiving any data [default: 60s]' -r
complete -c retriever -n "__fish_retriever_using_subcommand service; and __fish_seen_subcommand_from run" -l retries -d 'Retries after a transient failure (connection lost, 5xx, 429) [default: 5]' -r
complete -c retriever -n "__fish_retriever_using_subcommand service; and __fish_seen_subcommand_from run" -l max-instance-size -d 'Largest single instance taken from the cloud, e.g. 512MiB, 8GiB; a larger one is refused [default: 4GiB]' -r
complete -c retriever -n "__fish_retriever_using_subcommand service; and __fish_seen_subcommand_from run" -l log-file -d 'Append the log of `watch` to this file, one line per event, rotated at 10 MiB (FILE.1 to FILE.5 kept); for `service install`, the service\'s log [default: %ProgramData%\\retriever\\log\\NAME.log]' -r -F
complete -c retriever -n "__fish_retriever_using_subcommand service; and __fish_seen_subcommand_from run" -l allow-insecure-http -d 'Allow plain, unencrypted http:// to a cloud that is not on this machine'
complete -c retriever -n "__fish_retriever_using_subcommand service; and __fish_seen_subcommand_from run" -l to-tls -d 'DICOM TLS to the destination (--to); there is never a fallback to plain TCP'
complete -c retriever -n "__fish_retriever_using_subcommand service; and __fish_seen_subcommand_from run" -s q -l quiet -d 'No progress bars, only errors on stderr'
complete -c retriever -n "__fish_retriever_using_subcommand service; and __fish_seen_subcommand_from run" -s h -l help -d 'Print help'
complete -c retriever -n "__fish_retriever_using_subcommand service; and __fish_seen_subcommand_from help" -f -a "install" -d 'Register the service: starts with Windows (delayed), restarted after a failure; --config and --cache are passed to it [default: %ProgramData%\\retriever\\config.json and ...\\cache]'
complete -c retriever -n "__fish_retriever_using_subcommand service; and __fish_seen_subcommand_from help" -f -a "uninstall" -d 'Stop the service if it runs, and remove it'
complete -c retriever -n "__fish_retriever_using_subcommand service; and __fish_seen_subcommand_from help" -f -a "start" -d 'Start the service'
complete -c retriever -n "__fish_retriever_using_subcommand service; and __fish_seen_subcommand_from help" -f -a "stop" -d 'Stop the service; it finishes or abandons what is in flight, as after Ctrl-C'
complete -c retriever -n "__fish_retriever_using_subcommand service; and __fish_seen_subcommand_from help" -f -a "run" -d 'The service itself, as the Service Control Manager starts it (not run by hand: use `watch`)'
complete -c retriever -n "__fish_retriever_using_subcommand service; and __fish_seen_subcommand_from help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c retriever -n "__fish_retriever_using_subcommand help; and not __fish_seen_subcommand_from fetch ls store watch prune echo config status service help" -f -a "fetch" -d 'Pull studies and their prior studies from the cloud into the cache'
complete -c retriever -n "__fish_retriever_using_subcommand help; and not __fish_seen_subcommand_from fetch ls store watch prune echo config status service help" -f -a "ls" -d 'Show what is in the cache, and its state'
complete -c retriever -n "__fish_retriever_using_subcommand help; and not __fish_seen_subcommand_from fetch ls store watch prune echo config status service help" -f -a "store" -d 'Deliver cached studies to the DICOM destination with C-STORE'
complete -c retriever -n "__fish_retriever_using_subcommand help; and not __fish_seen_subcommand_from fetch ls store watch prune echo config status service help" -f -a "watch" -d 'The router: search the cloud again and again, fetch each new study with its priors, deliver them'
complete -c retriever -n "__fish_retriever_using_subcommand help; and not __fish_seen_subcommand_from fetch ls store watch prune echo config status service help" -f -a "prune" -d 'Remove studies older than the retention from the cache, and what crashed runs left behind'
complete -c retriever -n "__fish_retriever_using_subcommand help; and not __fish_seen_subcommand_from fetch ls store watch prune echo config status service help" -f -a "echo" -d 'Check the DICOM destination with C-ECHO'
complete -c retriever -n "__fish_retriever_using_subcommand help; and not __fish_seen_subcommand_from fetch ls store watch prune echo config status service help" -f -a "config" -d 'Show the effective configuration and where each value came from (secrets shown as ***)'
complete -c retriever -n "__fish_retriever_using_subcommand help; and not __fish_seen_subcommand_from fetch ls store watch prune echo config status service help" -f -a "status" -d 'Is the router (`watch`) in this cache running and working? Exit status 0 yes, 1 no (for monitoring)'
complete -c retriever -n "__fish_retriever_using_subcommand help; and not __fish_seen_subcommand_from fetch ls store watch prune echo config status service help" -f -a "service" -d 'Run the router (`watch`) as a Windows service: install, uninstall, start, stop'
complete -c retriever -n "__fish_retriever_using_subcommand help; and not __fish_seen_subcommand_from fetch ls store watch prune echo config status service help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c retriever -n "__fish_retriever_using_subcommand help; and __fish_seen_subcommand_from service" -f -a "install" -d 'Register the service: starts with Windows (delayed), restarted after a failure; --config and --cache are passed to it [default: %ProgramData%\\retriever\\config.json and ...\\cache]'
complete -c retriever -n "__fish_retriever_using_subcommand help; and __fish_seen_subcommand_from service" -f -a "uninstall" -d 'Stop the service if it runs, and remove it'
complete -c retriever -n "__fish_retriever_using_subcommand help; and __fish_seen_subcommand_from service" -f -a "start" -d 'Start the service'
complete -c retriever -n "__fish_retriever_using_subcommand help; and __fish_seen_subcommand_from service" -f -a "stop" -d 'Stop the service; it finishes or abandons what is in flight, as after Ctrl-C'
complete -c retriever -n "__fish_retriever_using_subcommand help; and __fish_seen_subcommand_from service" -f -a "run" -d 'The service itself, as the Service Control Manager starts it (not run by hand: use `watch`)'
