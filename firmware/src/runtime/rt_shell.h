/* Shell commands of the service runtime ("embserve service ..."); the
 * platform shell lists them in its command table.  argv[0] is the command's
 * own name, as in shell.c. */
#ifndef RT_SHELL_H
#define RT_SHELL_H

/* embserve service input <instance> <key> <value> */
void rt_cmd_service_input(int argc, char **argv);
/* embserve service list */
void rt_cmd_service_list(int argc, char **argv);

#endif
