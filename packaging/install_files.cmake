# Run by `cmake --install` (and CPack): the shipped configs and the systemd units, with the paths of
# this install. The files in config/ name the Debian package's layout (prefix /usr: /etc/navietakie,
# /var/lib/navietakie, /usr/lib/navietakie); an install elsewhere gets copies that name its own
# paths, so that what is installed always agrees with itself. GNUInstallDirs' rule: prefix /usr puts
# the configs in /etc and the state in /var, any other prefix under itself.
# Set by the install(CODE) before this: NAVIETAKIE_SOURCE_DIR, NAVIETAKIE_STAGE_DIR,
# NAVIETAKIE_BIN_REL, NAVIETAKIE_PLUGIN_REL, NAVIETAKIE_WEB_REL, NAVIETAKIE_DOC_REL.
set(prefix "${CMAKE_INSTALL_PREFIX}")
if(prefix STREQUAL "/usr")
  set(etc "/etc")
  set(var "/var")
else()
  set(etc "${prefix}/etc")
  set(var "${prefix}/var")
endif()
set(NAVIETAKIE_CONF_DIR "${etc}/navietakie")
set(NAVIETAKIE_DATA_DIR "${var}/lib/navietakie")
set(NAVIETAKIE_BIN_DIR "${prefix}/${NAVIETAKIE_BIN_REL}")
set(NAVIETAKIE_DOC_DIR "${prefix}/${NAVIETAKIE_DOC_REL}")
set(plugin_path "${prefix}/${NAVIETAKIE_PLUGIN_REL}/mosquitto_navietakie.so")
set(web_dir "${prefix}/${NAVIETAKIE_WEB_REL}")

file(MAKE_DIRECTORY "${NAVIETAKIE_STAGE_DIR}/config" "${NAVIETAKIE_STAGE_DIR}/systemd")
set(staged_configs)
foreach(name mosquitto.conf mosquitto-bridge.conf bridge.conf)
  file(READ "${NAVIETAKIE_SOURCE_DIR}/config/${name}" text)
  string(REPLACE "/usr/lib/navietakie/mosquitto_navietakie.so" "${plugin_path}" text "${text}")
  string(REPLACE "/usr/share/navietakie/web" "${web_dir}" text "${text}")
  string(REPLACE "plugin_opt_data_dir /var/lib/navietakie" "plugin_opt_data_dir ${NAVIETAKIE_DATA_DIR}" text "${text}")
  string(REPLACE "\ndata_dir ./data\n" "\ndata_dir ${NAVIETAKIE_DATA_DIR}\n" text "${text}")
  string(REPLACE "/etc/navietakie/" "${NAVIETAKIE_CONF_DIR}/" text "${text}")
  file(WRITE "${NAVIETAKIE_STAGE_DIR}/config/${name}" "${text}")
  list(APPEND staged_configs "${NAVIETAKIE_STAGE_DIR}/config/${name}")
endforeach()
file(INSTALL DESTINATION "${NAVIETAKIE_CONF_DIR}" TYPE FILE FILES ${staged_configs})

set(staged_units)
foreach(unit navietakie-mosquitto.service navietakie-bridge.service)
  configure_file("${NAVIETAKIE_SOURCE_DIR}/packaging/systemd/${unit}.in" "${NAVIETAKIE_STAGE_DIR}/systemd/${unit}" @ONLY)
  list(APPEND staged_units "${NAVIETAKIE_STAGE_DIR}/systemd/${unit}")
endforeach()
file(INSTALL DESTINATION "${prefix}/lib/systemd/system" TYPE FILE FILES ${staged_units})
