mod flows {
    selinon_macros::flows!(
        r#"
        tasks:
          - name: Hello
            import: app.tasks
            max_retries: 3
        flows: [hello]
        flow-definitions:
          - name: hello
            edges:
              - {from: , to: Helo}
        "#
    );
}

fn main() {}
